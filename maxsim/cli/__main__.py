"""``python -m maxsim.cli``."""

import sys

from maxsim.cli.main import main

sys.exit(main())
