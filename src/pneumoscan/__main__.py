"""`python -m pneumoscan ...`: the same command line as `pneumoscan ...`."""
from pneumoscan.cli import entry

entry()
