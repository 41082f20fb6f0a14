"""``python -m medgo.train`` (under torchrun)."""

import sys

from medgo.train.trainer import main

sys.exit(main())
