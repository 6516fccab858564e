"""``python -m jaxsweep``: the ``jaxsweep`` command (:func:`jaxsweep.cli.main`)."""

import sys

from jaxsweep import cli

if __name__ == "__main__":
  sys.exit(cli.main())
