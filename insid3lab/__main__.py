"""``python -m insid3lab`` (also what ``torchrun ... -m insid3lab eval`` runs)."""

import sys

from insid3lab.cli import main

sys.exit(main())
