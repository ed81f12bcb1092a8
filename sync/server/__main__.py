"""`python -m sync.server`: the same as the `outreach-server` command. Wiring only."""

import sys

from sync.server.cli import main

if __name__ == "__main__":
    sys.exit(main())
