"""The sweep's configuration: what the user asked for, checked before any training."""

import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from qgpt import data, qformat
from qgpt.policy import make_policy
from qgpt.train import TrainConfig


class SweepError(ValueError):
    """A bad sweep option, worded for the user (qgpt.cli prints it, exit code 2)."""


@dataclass(frozen=True)
class SweepConfig:
    formats: tuple  # Q formats, e.g. ("q8.8", "q4.12"); the float reference always runs
    roundings: tuple = ("nearest",)  # weight-update rounding modes
    seeds: int = 3  # runs per format and rounding, seeds seed .. seed + seeds - 1
    seed: int = 42  # the base seed
    steps: int = 1000  # training steps per run
    lr: float = 0.01  # peak learning rate
    data: str = str(data.DEFAULT_DATA)  # names file
    lowercase: bool = False  # lowercase names and drop those with other characters
    skip_long: bool = False  # skip names longer than the block size

    def seed_list(self):
        return [self.seed + i for i in range(self.seeds)]

    def run_configs(self):
        """Every run's TrainConfig: float for each seed, then format x rounding x seed."""
        base = TrainConfig(data=self.data, steps=self.steps, lr=self.lr, lowercase=self.lowercase,
                           skip_long=self.skip_long, checkpoint_every=self.steps)
        runs = [replace(base, seed=s) for s in self.seed_list()]
        for f in self.formats:
            for r in self.roundings:
                runs += [replace(base, format=f, rounding=r, seed=s) for s in self.seed_list()]
        return runs

    def command(self):
        """The qgpt command line that reproduces these results (--jobs and --out aside)."""
        parts = ["qgpt sweep", f"--formats {','.join(self.formats)}",
                 f"--rounding {','.join(self.roundings)}", f"--seeds {self.seeds}",
                 f"--seed {self.seed}", f"--steps {self.steps}", f"--lr {self.lr:g}",
                 f"--data {self.data}"]
        parts += ["--lowercase"] * self.lowercase + ["--skip-long"] * self.skip_long
        return " ".join(parts)


def _split(text):
    return [t.strip() for t in str(text).split(",") if t.strip()]


def make_config(formats, roundings="nearest", seeds=3, seed=42, steps=1000, lr=0.01,
                data_path=None, lowercase=False, skip_long=False):
    """A checked SweepConfig from user values (comma-separated strings or lists);
    SweepError naming the bad value otherwise. Nothing is trained here."""
    fmts = _split(formats) if isinstance(formats, str) else list(formats)
    if not fmts:
        raise SweepError("--formats is empty: give Q formats like q8.8,q4.12")
    names = []
    for f in fmts:
        if str(f).strip().lower() == "float":
            raise SweepError("--formats: the float reference always runs; list only Q formats")
        try:
            name = qformat.parse(f).name
        except qformat.FormatError as e:
            raise SweepError(f"--formats: {e}") from None
        if name in names:
            raise SweepError(f"--formats: {name} is listed twice")
        names.append(name)
    rounds = _split(roundings) if isinstance(roundings, str) else list(roundings)
    if not rounds:
        raise SweepError(f"--rounding is empty: give one or more of {', '.join(qformat.ROUNDINGS)}")
    for r in rounds:
        if r not in qformat.ROUNDINGS:
            raise SweepError(f"--rounding: {r!r} is unknown: want one or more of "
                             f"{', '.join(qformat.ROUNDINGS)}, comma-separated")
    if len(set(rounds)) != len(rounds):
        raise SweepError("--rounding: a mode is listed twice")
    if not isinstance(seeds, int) or seeds < 1:
        raise SweepError(f"--seeds {seeds}: want at least 1 seed")
    if not isinstance(steps, int) or steps < 1:
        raise SweepError(f"--steps {steps}: want at least 1 step")
    cfg = SweepConfig(formats=tuple(names), roundings=tuple(rounds), seeds=seeds, seed=seed,
                      steps=steps, lr=lr, data=str(data_path or _shown_path(data.DEFAULT_DATA)),
                      lowercase=lowercase, skip_long=skip_long)
    for f in cfg.formats:  # the whole policy, as each run will build it (lr, update shift)
        for r in cfg.roundings:
            try:
                make_policy(f, r, "", lr)
            except qformat.FormatError as e:
                raise SweepError(f"{f} {r}: {e}") from None
    return cfg


def _shown_path(path):
    """path relative to the working folder when inside it (results stay machine-neutral)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def check_out_dir(out):
    """Create out if needed and prove a file can be written there, before any training."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SweepError(f"--out {out}: is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".qgpt-write-test-"):
            pass
    except OSError as e:
        raise SweepError(f"--out {out}: cannot write there ({e.strerror or e})") from None
    return out
