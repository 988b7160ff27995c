"""`python -m ptdit ...` (also what `torchrun -m ptdit` runs)."""

import sys

from ptdit.cli.main import main

sys.exit(main())
