"""``python -m insid3lab`` (also what ``torchrun ... -m insid3lab eval`` runs)."""

import sys

from .cli import main

sys.exit(main())
