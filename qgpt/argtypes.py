"""Option types shared by the command lines (qgpt/cli.py, qgpt/device/commands.py).

A lower layer than both: each parses one option value or raises
argparse.ArgumentTypeError, which argparse prints as one usage line, exit code 2.
"""

import argparse


def positive(text):
    """A whole number of at least 1 (steps, counts, a baud rate)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n} must be at least 1")
    return n
