"""`python -m app`: the same as `python -m app.run` (the app with a local sync server)."""

import sys

from .run import main

sys.exit(main())
