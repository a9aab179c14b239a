"""`python -m pneumoscan ...`: the same command line as `pneumoscan ...`."""
import sys

from pneumoscan.cli import main

sys.exit(main())
