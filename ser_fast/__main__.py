import sys

from ser_fast.cli import main

sys.exit(main())
