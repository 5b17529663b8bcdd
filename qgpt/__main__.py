import sys

from qgpt.cli import main

sys.exit(main())
