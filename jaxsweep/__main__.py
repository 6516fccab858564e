"""``python -m jaxsweep``: the ``jaxsweep`` command."""

import sys

from jaxsweep import cli

sys.exit(cli.main())
