import sys

from genprint.cli import main

sys.exit(main())
