"""Option types shared by the command lines (qgpt/cli.py, qgpt/device/commands.py,
qgpt/sweep/command.py).

A lower layer than all of them: each turns the text of one option into a checked
value or raises argparse.ArgumentTypeError, which qgpt prints as one line
'qgpt: error: argument --lr: ...', exit code 2. The ranges are qgpt.runconfig's
(imported when an option is parsed, so importing this module stays light), the
same whether a value comes from an option, a library call or a checkpoint.
"""

import argparse
import re


def _whole(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _real(text):
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _checked(value, check):
    try:
        return check(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def positive(text):
    """A whole number of at least 1 (counts, a baud rate)."""
    n = _whole(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n} must be at least 1")
    return n


def count(text):
    """A whole number of at least 0."""
    n = _whole(text)
    if n < 0:
        raise argparse.ArgumentTypeError(f"{n} must be at least 0")
    return n


def steps(text):
    """Training steps: 1 .. 2**30."""
    from qgpt.runconfig import check_steps

    return _checked(_whole(text), check_steps)


def seed(text):
    """0 .. 2**30 - 1: every seed the PRNG tells apart (a larger one would alias)."""
    from qgpt.runconfig import check_seed

    return _checked(_whole(text), check_seed)


def learning_rate(text):
    """A peak learning rate: 0 < lr < 1."""
    from qgpt.runconfig import check_lr

    return _checked(_real(text), check_lr)


def temperature(text):
    """A sampling temperature: 1/256 .. 256."""
    from qgpt.runconfig import check_temperature

    return _checked(_real(text), check_temperature)


MAX_SECONDS = 86400.0  # a day: the longest wait that is not a mistake


def seconds(text):
    """A timeout: a number of seconds above 0 and at most a day."""
    x = _real(text)
    if not 0 < x <= MAX_SECONDS:  # NaN and infinities fail too
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration: want seconds above 0 "
                                         f"and at most {MAX_SECONDS:g} (a day)")
    return x


def heap_size(text):
    """A MicroPython heap size as `micropython -X heapsize=` takes it: 96K, 4M, 200000."""
    match = re.fullmatch(r"(\d+)([KkMm]?)", text.strip())
    if not match or int(match.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a heap size: want one like "
                                         "96K, 4M or 200000 (bytes)")
    return match.group(1) + match.group(2).upper()
