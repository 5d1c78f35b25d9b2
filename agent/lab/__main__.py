"""``python -m agent.lab lab run`` — the lab CLI without the main program."""

import sys

from .cli import main

sys.exit(main())
