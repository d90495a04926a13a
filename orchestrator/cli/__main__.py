"""``python -m orchestrator.cli``: the orchestrator's commands (without ``cluster.cli``'s)."""

import sys

from orchestrator.cli import main

if __name__ == "__main__":
    sys.exit(main())
