"""python -m qgpt.device: `qgpt device` alone."""

import sys

from qgpt.device.commands import main

sys.exit(main())
