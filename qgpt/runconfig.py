"""A training run's configuration (TrainConfig) and the checks of every number it takes.

The command line's option types (qgpt/cli.py) call the same checks, so a value is
refused with the same words whether it comes from an option, a library call or a
checkpoint's recorded config.
"""

import math
from dataclasses import asdict, dataclass

import numpy as np

from qgpt import data, prng

MAX_STEPS = 1 << 30  # the PRNG's counters (data order, rounding) have 30 bits
TEMPERATURE_MIN = 1 / 256  # integer sampling scales logits by round(256 / temperature):
TEMPERATURE_MAX = 256.0  # 1 .. 65536 (docs/arithmetic.md, section 10)


# --- checks of the numbers a run takes (the CLI's option types call them too) ---


def _whole(x):
    return isinstance(x, int | np.integer) and not isinstance(x, bool)


def _real(x):
    return isinstance(x, int | float | np.integer | np.floating) and not isinstance(x, bool)


def check_steps(steps):
    if not _whole(steps) or not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"{steps!r} is not a step count: want a whole number from 1 to "
                         f"{MAX_STEPS} (2**30)")
    return int(steps)


def check_seed(seed):
    """A seed the PRNG uses every bit of: 0 .. 2**30 - 1 (prng.key keeps 30 bits, so a
    larger or negative seed would silently equal another one)."""
    if not _whole(seed) or not 0 <= seed <= prng.MAX_SEED:
        raise ValueError(f"{seed!r} is not a seed: want a whole number from 0 to "
                         f"{prng.MAX_SEED} (the PRNG keeps {prng.SEED_BITS} bits of a seed)")
    return int(seed)


def check_lr(lr):
    """A peak learning rate: finite, 0 < lr < 1, for float and integer runs alike."""
    if not _real(lr) or not math.isfinite(lr) or not 0 < lr < 1:
        raise ValueError(f"{lr!r} is not a learning rate: want a number with 0 < lr < 1")
    return float(lr)


def check_temperature(t):
    """A sampling temperature in [1/256, 256]: integer sampling multiplies the logits by
    round(256 / t), which must be a whole number from 1 to 65536."""
    if not _real(t) or not math.isfinite(t) or not TEMPERATURE_MIN <= t <= TEMPERATURE_MAX:
        raise ValueError(f"{t!r} is outside the sampling range: want a temperature from "
                         f"1/256 ({TEMPERATURE_MIN}) to {TEMPERATURE_MAX:g}")
    return float(t)


@dataclass(frozen=True)
class TrainConfig:
    data: str = str(data.DEFAULT_DATA)  # names file, one name per line
    steps: int = 1000  # training steps, one name each
    seed: int = 42  # fixes init, data order, stochastic rounding and sampling
    lr: float = 0.01  # peak Adam learning rate, decayed linearly to 0
    format: str = "float"  # "float" for the float64 reference, or a Q format like "q4.12"
    rounding: str = "nearest"  # integer runs: nearest | floor | stochastic
    master: str = ""  # integer runs: master-weight format ("" = the policy's default)
    policy: str = ""  # integer runs: "" (the defaults of format) or the canonical policy SPEC
    lowercase: bool = False  # lowercase names and drop those with other characters
    skip_long: bool = False  # skip names longer than the block size
    checkpoint_every: int = 100  # steps between checkpoints (and at the end); 0: at the end only
    strict: bool = False  # integer runs: check every intermediate fits int32

    def __post_init__(self):
        check_config(self)

    def recorded(self):
        """The fields a run records (config.json, checkpoints): a float run leaves out the
        integer-only options, which have no effect on it."""
        d = asdict(self)
        if self.format == "float":
            for name in INTEGER_ONLY:
                del d[name]
        return d


INTEGER_ONLY = ("rounding", "master", "policy", "strict")  # options only integer runs use
# the fields every checkpoint records (a float run: all but INTEGER_ONLY); fields added to
# TrainConfig later take their defaults when an older checkpoint lacks them
RECORDED_FIELDS = ("data", "steps", "seed", "lr", "format", "rounding", "master", "lowercase",
                   "skip_long", "checkpoint_every", "strict")


class ConfigError(ValueError):
    """A TrainConfig field out of its range, worded for the user (names the field)."""


def check_config(cfg):
    """ConfigError unless every field of cfg has its type and range, formats are canonical
    ('q4.12', not ' Q4.12') and a float run sets no integer-only option."""
    from qgpt import qformat

    def field(name, check):
        try:
            check(getattr(cfg, name))
        except ValueError as e:
            raise ConfigError(f"{name}: {e}") from None

    def canonical(text, max_bits):
        name = qformat.parse(text, max_bits).name if isinstance(text, str) else None
        if name != text:
            raise ValueError(f"{str(text)[:40]!r} is not a format name: want one like "
                             f"{name or 'q4.12'!r}")

    def flag(x):
        if not isinstance(x, bool):
            raise ValueError(f"{x!r}: want true or false")

    def every(n):  # 0: only at the end (what a device run writes when it saves no more)
        if not _whole(n) or n < 0:
            raise ValueError(f"{n!r}: want a whole number >= 0")

    def path(x):
        if not isinstance(x, str):
            raise ValueError(f"{x!r}: want a path")

    field("data", path)
    field("steps", check_steps)
    field("seed", check_seed)
    field("lr", check_lr)
    field("checkpoint_every", every)
    for name in ("lowercase", "skip_long", "strict"):
        field(name, flag)
    if cfg.format != "float":
        field("format", lambda x: canonical(x, qformat.DATA_MAX_BITS))
        if cfg.master:
            field("master", lambda x: canonical(x, qformat.WIDE_MAX_BITS))
        if cfg.policy:
            from qgpt.policy import parse_policy

            field("policy", lambda x: parse_policy(x, None, None, cfg.rounding, cfg.lr))
        from qgpt.policy import UPDATE_ROUNDINGS

        if cfg.rounding not in UPDATE_ROUNDINGS:
            raise ConfigError(f"rounding {str(cfg.rounding)[:40]!r} is unknown: want one of "
                              f"{', '.join(UPDATE_ROUNDINGS)}")
        return
    defaults = TrainConfig.__dataclass_fields__
    for name in INTEGER_ONLY:
        if getattr(cfg, name) != defaults[name].default:
            raise ConfigError(f"{name} {getattr(cfg, name)!r} applies to integer runs only: "
                              "a float run has none (drop it, or give a format)")
