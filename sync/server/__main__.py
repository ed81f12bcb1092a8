"""`python -m sync.server`: the same as the `outreach-server` command. Wiring only."""

import sys

from sync.server.cli import main

sys.exit(main())
