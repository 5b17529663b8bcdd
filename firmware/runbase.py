"""What the run's modules share, below all of them: the error type of a bad config,
dataset or checkpoint, and the packed dataset's layout (qgpt/pack.py).

qgpt_train (the entry point) and the setup's stages (runcfg, runpolicy, restore)
import it; it imports nothing of the firmware, so no import goes back up to the entry
point.
"""

from micropython import const

DATA_HEADER = const(20)  # the packed dataset's header (runcfg checks it)
RECORD = const(16)  # bytes a record: the length, then at most 15 letters (BLOCK = 16)


class RunError(ValueError):
    """A bad config, dataset or checkpoint, worded for the user."""
