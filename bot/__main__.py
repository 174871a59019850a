"""`python -m bot` is the `newsalert` command."""

import sys

from bot.cli import main

sys.exit(main())
