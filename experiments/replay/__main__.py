"""``python -m experiments.replay``: see experiments/replay/cli.py."""

import sys

from experiments.replay.cli import main

sys.exit(main())
