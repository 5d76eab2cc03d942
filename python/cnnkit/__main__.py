"""`python -m cnnkit`: the cnnkit command line (see cnnkit.cli)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
