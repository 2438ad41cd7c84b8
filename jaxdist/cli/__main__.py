"""``python -m jaxdist.cli``: the ``jaxdist`` command."""

import sys

from . import main

sys.exit(main())
