"""`python -m placement_dev.standins policy|sprm --port N`: see `cli.py`."""

import sys

from placement_dev.standins.cli import main

sys.exit(main())
