"""`python -m collector ...` is `productimon-collector ...` (what the service files run)."""

import sys

from collector.cli import main

sys.exit(main())
