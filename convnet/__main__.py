"""`python -m convnet ...` runs the convnet command."""

import sys

from .cli import main

sys.exit(main())
