"""python -m mnistcore"""

import sys

from mnistcore.cli import main

sys.exit(main())
