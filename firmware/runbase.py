"""What the run's modules share, below all of them: the error type of a bad config,
dataset or checkpoint, the packed dataset's layout (qgpt/pack.py), and the setup's
stages run one after the other (start).

qgpt_train (the entry point) and the setup's stages (runcfg, runpolicy, restore)
import it; it imports no firmware module at its top, and start only the stages and
the training code, so no import goes back up to the entry point. qgpt_train drops it
after the setup, so that the setup's code leaves memory (only RunError stays).
"""

import gc
import sys

from micropython import const

DATA_HEADER = const(20)  # the packed dataset's header (runcfg checks it)
RECORD = const(16)  # bytes a record: the length, then at most 15 letters (BLOCK = 16)


class RunError(ValueError):
    """A bad config, dataset or checkpoint, worded for the user."""


def _deep(n):
    if n:
        _deep(n - 1)


def collect():
    """gc.collect(), the C stack below the caller overwritten first by calls 8 deep: the
    collector takes every word of the stack below its own frame for a pointer, and a
    dropped module's address left there by a call that has returned would keep its code
    in memory, where the next stage's goes (firmware/README.md, "Memory")."""
    _deep(8)
    gc.collect()


def _stage(name, a, b):
    """The setup module `name`'s setup(a, b), then the module leaves memory (each drops
    the modules it imported for the setup). In a function of its own, so that no stale
    reference to the module stays in start's frame, which the garbage collector scans."""
    try:
        return __import__(name).setup(a, b)
    finally:
        if name in sys.modules:
            del sys.modules[name]
        collect()


def start(path):
    """The setup's stages, one module at a time, each dropped after use (firmware/README.md,
    "Memory"): runcfg (the config) puts the state block at the bottom of the heap, so
    that the setup's code comes and goes above it; runpolicy resolves the policy; layout
    makes the views into the block; restore fills it (the initial weights, or a
    checkpoint); then the training code fills the holes they left. Returns (the config,
    the Model, its module, the Model's numbers, restore's (first step, seconds before,
    the Model's counters or None)) for qgpt_train.begin."""
    cfg = _stage("runcfg", path, None)
    _stage("runpolicy", cfg, None)
    # the kernels and the PRNG (for the run, and restore's) fill the holes the policy
    # left, not those restore will leave
    import kernels  # noqa: F401
    import loss  # noqa: F401
    import prng  # noqa: F401

    views = _stage("layout", cfg, None)
    if cfg["resume"]:  # the checkpoint's header checked, without restore's code
        _stage("resume", cfg, views)
    numbers = cfg["numbers"]
    cfg, begin = _stage("restore", cfg, views)  # the run's config, compact
    if numbers[7][1] or numbers[7][3]:  # block-scaled Adam state (9.6): model imports
        __import__("blockadam")  # it at the first step; it takes a hole now
    import model as MD

    collect()  # what the imports left on the stack (the Model's tables want runs of 272)
    mdl = MD.Model(views, numbers, cfg["seed"])
    views = None
    return cfg, mdl, MD, numbers, begin
