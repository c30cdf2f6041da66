"""``python -m mmtiffsink``: the same as the ``mmtiffsink`` command."""

import sys

from .cli import main

sys.exit(main())
