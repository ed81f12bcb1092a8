"""`python -m app.cli`: the `outreach` command line."""

import sys

from .main import main

sys.exit(main())
