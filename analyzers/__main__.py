"""``python -m analyzers``: see :mod:`analyzers.cli`."""

import sys

from .cli import main

sys.exit(main())
