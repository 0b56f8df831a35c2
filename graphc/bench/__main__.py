"""``python -m graphc.bench``: the same as ``graphc bench``."""

import sys

from .cli import main

sys.exit(main())
