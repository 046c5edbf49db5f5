"""`python -m placement.standins policy|sprm --port N`: see `cli.py`."""

import sys

from placement.standins.cli import main

sys.exit(main())
