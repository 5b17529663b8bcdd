"""python -m qgpt.conformance: see qgpt/conformance/cli.py."""

import sys

from qgpt.conformance.cli import main

sys.exit(main())
