"""Docstrings of the public API: NumPy style, as help() shows them.

Every public function and class has a docstring (its own, not one inherited) with
a "Parameters" section that names every parameter of its signature, and every
function that returns something has a "Returns" section. A class documents its
constructor's parameters (dataclasses and named tuples may list their fields under
"Attributes" instead). One test per public name; the examples of the modules whose
docstrings are complete run as doctests.
"""

import ast
import dataclasses
import doctest
import importlib
import inspect
import re
import textwrap
import types

import pytest

import cnnkit

# Modules walked for public names. Earlier modules win where one object has several
# public names (cnnkit.gradcheck is also cnnkit.gradcheck.gradcheck).
MODULES = ["cnnkit.functional", "cnnkit.optim", "cnnkit.gradcheck", "cnnkit.data", "cnnkit.classic", "cnnkit.nn",
           "cnnkit.distributed", "cnnkit.models", "cnnkit.summary", "cnnkit.testing", "cnnkit.testing.pytest", "cnnkit"]

DOCTEST_MODULES = ["cnnkit.functional", "cnnkit.optim", "cnnkit.gradcheck", "cnnkit.data", "cnnkit.classic"]


def _module(name):
    # importlib, not attribute access: cnnkit.gradcheck and cnnkit.summary are
    # shadowed by the functions of the same name at the top level.
    return importlib.import_module(name)


def _public_names(module):
    """__all__, plus the public functions and classes the module defines itself
    (such as functional.BatchNormSaved, which batch_norm returns)."""
    names = list(getattr(module, "__all__", []))
    for name, obj in vars(module).items():
        if name.startswith("_") or name in names:
            continue
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == module.__name__:
            names.append(name)
    return names


def _cases():
    seen = set()
    cases = []
    for module_name in MODULES:
        module = _module(module_name)
        for name in _public_names(module):
            obj = getattr(module, name)
            if isinstance(obj, types.ModuleType) or not callable(obj) or id(obj) in seen:
                continue
            seen.add(id(obj))
            cases.append(pytest.param(obj, id=f"{module_name}.{name}"))
    return cases


# ---- Docstring parsing


def _own_doc(obj):
    """The docstring help() shows for obj, cleaned; never one inherited from a base."""
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
    return inspect.cleandoc(doc) if isinstance(doc, str) else ""


def _sections(doc):
    """{header: lines} of a NumPy-style docstring (a header is underlined with dashes)."""
    lines = doc.splitlines()
    sections, current = {}, None
    for i, line in enumerate(lines):
        underline = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if line.strip() and len(underline) >= 3 and set(underline) == {"-"}:
            current = line.strip()
            sections[current] = []
        elif current is not None and not (set(line.strip()) == {"-"}):
            sections[current].append(line)
    return sections


def _documented_names(lines):
    """Names an entry list documents: unindented 'name : type' or 'a, b' lines."""
    names = set()
    for line in lines:
        if not line.strip() or line[0].isspace():
            continue
        head = line.split(" : ", 1)[0]
        for name in head.split(","):
            names.add(name.strip().lstrip("*"))
    return names


_PYBIND_SIGNATURE = re.compile(r"^\w+\((?P<params>.*)\)\s*->\s*(?P<ret>.+)$")


def _split_params(text):
    """Top-level comma-separated items of a pybind11 parameter list."""
    items, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return [item.strip() for item in items if item.strip()]


def _signature(obj):
    """(parameter names, whether it returns something or None when unknown)."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        # pybind11 functions: their docstring starts with "name(a: int) -> T".
        first = (obj.__doc__ or "").strip().splitlines()[:1]
        match = _PYBIND_SIGNATURE.match(first[0]) if first else None
        assert match, f"no signature found for {obj!r}"
        params = [p.split(":", 1)[0].split("=", 1)[0].strip().lstrip("*") for p in _split_params(match["params"])]
        return [p for p in params if p and p != "self"], match["ret"].strip() != "None"
    names = [p.name for p in sig.parameters.values() if p.name != "self"]
    return names, None


def _returns_value(fn):
    """Whether a Python function's own body has a `return <value>` (not None)."""
    source = textwrap.dedent(inspect.getsource(fn))
    tree = ast.parse(source).body[0]
    pending = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue  # nested scopes return for themselves
        if isinstance(node, ast.Return) and node.value is not None:
            if not (isinstance(node.value, ast.Constant) and node.value.value is None):
                return True
        pending.extend(ast.iter_child_nodes(node))
    return False


def _is_record(cls):
    return dataclasses.is_dataclass(cls) or (issubclass(cls, tuple) and hasattr(cls, "_fields"))


# ---- Tests


@pytest.mark.parametrize("obj", _cases())
def test_docstring(obj):
    name = obj.__name__
    doc = _own_doc(obj)
    assert doc, f"{name}: no docstring"
    sections = _sections(doc)
    params, returns = _signature(obj)

    if params:
        listed = ["Parameters"] + (["Attributes"] if inspect.isclass(obj) and _is_record(obj) else [])
        present = [s for s in listed if s in sections]
        assert present, f"{name}: no {' or '.join(listed)} section for parameters {params}"
        documented = set().union(*(_documented_names(sections[s]) for s in present))
        missing = [p for p in params if p not in documented]
        assert not missing, f"{name}: parameters not documented: {missing}"

    if not inspect.isclass(obj):
        if returns is None:
            returns = _returns_value(obj)
        if returns:
            assert "Returns" in sections, f"{name}: returns a value but has no Returns section"


@pytest.mark.parametrize("module_name", DOCTEST_MODULES)
def test_examples_run(module_name):
    """The Examples sections are correct: they run as doctests."""
    module = _module(module_name)
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report = []
    for test in finder.find(module, module_name, globs={}):
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)


def test_parser_reads_numpy_sections():
    doc = inspect.cleandoc(
        """Summary.

        Parameters
        ----------
        x : ndarray
            Input.
        a, b
            Two more.
        *rest : tuple

        Returns
        -------
        ndarray
        """
    )
    sections = _sections(doc)
    assert set(sections) == {"Parameters", "Returns"}
    assert _documented_names(sections["Parameters"]) == {"x", "a", "b", "rest"}


def test_every_top_level_function_is_walked():
    ids = {p.id for p in _cases()}
    for name in ("cnnkit.set_num_threads", "cnnkit.manual_seed", "cnnkit.gradcheck.gradcheck",
                 "cnnkit.functional.BatchNormSaved", "cnnkit.optim.SGD", "cnnkit.data.DataLoader"):
        assert name in ids
    assert cnnkit.gradcheck is _module("cnnkit.gradcheck").gradcheck
