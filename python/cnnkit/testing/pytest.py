"""pytest helpers for cnnkit.testing: one line parametrises a test over an op's samples.

    import numpy as np
    from cnnkit import reference
    from cnnkit.testing import assert_close
    from cnnkit.testing.pytest import parametrize_samples

    @parametrize_samples("conv2d", dtype=np.float32)
    def test_my_conv2d(case):
        got = my_conv2d(*case.args, **case.kwargs)
        assert_close(got, reference.conv2d(*case.args, **case.kwargs), np.float32, note=case.note)

Each test id is the case's note. The same works with plain pytest:
`@pytest.mark.parametrize("case", sample_inputs("conv2d"), ids=str)`.
"""

import numpy as np
import pytest

from . import sample_inputs


def parametrize_samples(op, argname="case", dtype=np.float64, seed=0):
    """A pytest.mark.parametrize over sample_inputs(op, dtype, seed), ids the notes.

    Parameters
    ----------
    op : str
        The op's name, as for sample_inputs.
    argname : str, optional
        The test's argument that receives each Sample.
    dtype : float32 or float64, optional
        The dtype of the samples' float arrays.
    seed : int, optional
        The samples' seed.

    Returns
    -------
    pytest.MarkDecorator
        The decorator for the test function.
    """
    if not isinstance(argname, str) or not argname.isidentifier():
        raise ValueError(f"parametrize_samples: argname: expected an identifier, got {argname!r}")
    return pytest.mark.parametrize(argname, sample_inputs(op, dtype, seed), ids=str)
