"""``python -m analyzers``: see :mod:`analyzers.cli`."""

import sys

from analyzers.cli import main

sys.exit(main())
