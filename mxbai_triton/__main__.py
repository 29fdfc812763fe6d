"""`python -m mxbai_triton` runs the CLI."""

import sys

from mxbai_triton.cli import main

sys.exit(main())
