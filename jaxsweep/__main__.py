"""``python -m jaxsweep``: the ``jaxsweep`` command."""

import sys

from jaxsweep import cli

if __name__ == "__main__":
  sys.exit(cli.main())
