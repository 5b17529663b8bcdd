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


# The PRNG keys every draw with the seed's low 30 bits (qgpt/prng.py, key): larger
# seeds would silently repeat smaller ones, so they are refused.
SEED_LIMIT = 2**30


def seed(text):
    """A seed: a whole number in 0 .. 2**30 - 1."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= n < SEED_LIMIT:
        raise argparse.ArgumentTypeError(
            f"{n} is outside 0..{SEED_LIMIT - 1} (the random numbers use a seed's low 30 bits)")
    return n


MAX_SECONDS = 86400.0  # a day: the longest wait that is not a mistake


def seconds(text):
    """A duration in seconds: a number above 0, at most a day."""
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < x <= MAX_SECONDS:  # NaN fails too
        raise argparse.ArgumentTypeError(f"{text} seconds: want a number above 0 and at most "
                                         f"{MAX_SECONDS:g} (a day)")
    return x
