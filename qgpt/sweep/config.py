"""The sweep's configuration: the grid the user asked for (options or a --grid file), checked
before any training, and the runs it makes."""

import itertools
import json
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

from qgpt import data
from qgpt.policy import train_settings
from qgpt.runconfig import check_seed
from qgpt.sweep.axes import AXES, AXIS_BY_NAME, AxisError, split_values
from qgpt.train import TrainConfig, make_model


class SweepError(ValueError):
    """A bad sweep option, worded for the user (qgpt.cli prints it, exit code 2)."""


@dataclass(frozen=True)
class Run:
    point: dict  # axis name -> value (None where the axis does not apply: float runs)
    seed: int
    config: TrainConfig  # what run_one trains
    label: str  # e.g. "q8.8 nearest seed 42", "float64 seed 42"


@dataclass(frozen=True)
class SweepConfig:
    grid: tuple  # ((axis name, (values, ...)), ...): every axis of axes.AXES, in that order
    seeds: int = 3  # runs per grid point, seeds seed .. seed + seeds - 1
    seed: int = 42  # the base seed
    data: str = str(data.DEFAULT_DATA)  # names file
    lowercase: bool = False  # lowercase names and drop those with other characters
    skip_long: bool = False  # skip names longer than the block size

    def values(self, name):
        """The values of axis name, in the order given."""
        return dict(self.grid)[name]

    @property
    def formats(self):
        return self.values("format")

    @property
    def roundings(self):
        return self.values("rounding")

    def varying(self):
        """The axes with more than one value."""
        return [a for a in AXES if len(self.values(a.name)) > 1]

    def seed_list(self):
        return [self.seed + i for i in range(self.seeds)]

    def points(self):
        """Every grid point without the seed: the float reference's first (one per
        combination of the axes that apply to float), then the integer ones; each a dict
        axis name -> value, in the order of AXES."""
        shared = [a for a in AXES if not a.integer_only]
        float_points = []
        for combo in itertools.product(*(self.values(a.name) for a in shared)):
            point = {a.name: None for a in AXES}
            point.update(zip((a.name for a in shared), combo, strict=True))
            point["format"] = "float"
            float_points.append(point)
        int_points = [dict(zip((a.name for a in AXES), combo, strict=True))
                      for combo in itertools.product(*(self.values(a.name) for a in AXES))]
        return float_points + int_points

    def label(self, point):
        """A grid point as text: format and rounding, then the axes that vary or leave their
        default, e.g. "q8.8 nearest lr 0.003" or "float64 steps 500"."""
        if point["format"] == "float":
            words = ["float64"]
        else:
            words = [w for w in (point["format"], point["rounding"]) if w]
        for axis in AXES:
            if axis.name in ("format", "rounding") or point[axis.name] is None:
                continue
            if axis.in_label(self.values(axis.name)):
                words.append(f"{axis.name} {axis.show(point[axis.name])}")
        return " ".join(words)

    def train_config(self, point, seed):
        """The TrainConfig of one run: the grid point's values on their TrainConfig fields.
        An integer run's precision (format, rounding, master and, once it is an axis, policy)
        is resolved as `qgpt train` resolves its options (policy.train_settings), so the run
        is exactly the one its `qgpt train` command trains."""
        given = {name: value for name, value in point.items() if value is not None}
        if point["format"] != "float":
            fmt, rounding, master, policy, _ = train_settings(
                given.pop("format") or None, given.pop("policy", ""), given.pop("master", ""),
                given.pop("rounding"), point["lr"])
            given.update(format=fmt, rounding=rounding, master=master, policy=policy)
        return TrainConfig(data=self.data, lowercase=self.lowercase, skip_long=self.skip_long,
                           seed=seed, checkpoint_every=point["steps"], **given)

    def runs(self):
        """Every run, seeds innermost: float runs first, then the integer runs in grid order."""
        return [Run(point, s, self.train_config(point, s), f"{self.label(point)} seed {s}")
                for point in self.points() for s in self.seed_list()]

    def run_configs(self):
        return [r.config for r in self.runs()]

    def command(self):
        """The qgpt command line that reproduces these results (--jobs, --out and where the
        runs ran aside)."""
        parts = ["qgpt sweep"]
        for axis in AXES:
            parts += axis.command_parts(self.values(axis.name))
            if axis.name == "rounding":
                parts += [f"--seeds {self.seeds}", f"--seed {self.seed}"]
        parts.append(f"--data {self.data}")
        parts += ["--lowercase"] * self.lowercase + ["--skip-long"] * self.skip_long
        return " ".join(parts)

    def key(self):
        """What decides the results, as plain JSON-able data (a resumed sweep must match)."""
        return json.loads(json.dumps({
            "grid": {name: list(values) for name, values in self.grid},
            "seeds": self.seeds, "seed": self.seed, "data": self.data,
            "lowercase": self.lowercase, "skip_long": self.skip_long}))


def _axis_values(axis, given):
    """The checked, canonical values of one axis; SweepError naming the option otherwise."""
    if given is None:
        if not axis.default:
            raise SweepError(f"{axis.option} is missing: {axis.help} (or a --grid file)")
        return axis.default
    raw = split_values(axis, given)
    if not raw:
        raise SweepError(f"{axis.option} is empty: {axis.help}")
    values = []
    for item in raw:
        try:
            value = axis.parse(item)
        except AxisError as e:
            raise SweepError(f"{axis.option}: {e}") from None
        if value in values:
            raise SweepError(f"{axis.option}: {axis.show(value)} is listed twice")
        values.append(value)
    return tuple(values)


def make_config(formats=None, roundings=None, seeds=3, seed=42, steps=None, lr=None,
                data_path=None, lowercase=False, skip_long=False, **other_axes):
    """A checked SweepConfig from user values: for every axis a comma-separated string, a
    number or a list (formats, roundings, steps, lr, and any other axis of axes.AXES by its
    name, e.g. master=...); None takes the axis's default. SweepError naming the bad value
    otherwise. Every run's model is built once (without training) to check its policy."""
    given = {"format": formats, "rounding": roundings, "steps": steps, "lr": lr, **other_axes}
    unknown = set(given) - set(AXIS_BY_NAME)
    if unknown:
        raise TypeError(f"make_config: no axis named {', '.join(sorted(unknown))}")
    policy_only = given.get("format") is None and given.get("policy") is not None
    grid = tuple((a.name, ("",) if a.name == "format" and policy_only  # each policy's own
                  else _axis_values(a, given.get(a.name))) for a in AXES)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise SweepError(f"--seeds {seeds}: want at least 1 seed")
    try:
        check_seed(seed)
        check_seed(seed + seeds - 1)  # the sweep's last seed
    except ValueError as e:
        raise SweepError(f"--seed {seed} --seeds {seeds}: {e}") from None
    for name, flag in (("--lowercase", lowercase), ("--skip-long", skip_long)):
        if not isinstance(flag, bool):
            raise SweepError(f"{name} {flag!r}: want true or false")
    cfg = SweepConfig(grid=grid, seeds=seeds, seed=seed,
                      data=str(data_path or _shown_path(data.DEFAULT_DATA)),
                      lowercase=lowercase, skip_long=skip_long)
    for point in cfg.points():  # every run's config and policy, as each run will build it
        try:
            train_cfg = cfg.train_config(point, cfg.seed)
            if point["format"] != "float":
                make_model(train_cfg)
        except ValueError as e:
            raise SweepError(f"{cfg.label(point)}: {e}") from None
    return cfg


# --- grid files ---

KWARG_OF_AXIS = {"format": "formats", "rounding": "roundings"}  # make_config's other names

SCALAR_KEYS = {"seeds": "seeds", "seed": "seed", "data": "data_path", "lowercase": "lowercase",
               "skip_long": "skip_long", "skip-long": "skip_long"}


def read_grid(path):
    """A --grid file (TOML or JSON, by its suffix) as make_config keyword arguments.

    Keys: an axis's grid keys (formats, rounding, master, lr, steps, ...) with a value or a
    list of values, and seeds, seed, data, lowercase, skip_long."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise SweepError(f"--grid {path}: cannot read it ({e.strerror or e})") from None
    try:
        if path.suffix == ".toml":
            doc = tomllib.loads(text)
        elif path.suffix == ".json":
            doc = json.loads(text)
        else:
            raise SweepError(f"--grid {path}: want a .toml or .json file")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise SweepError(f"--grid {path}: not valid {path.suffix[1:].upper()} ({e})") from None
    if not isinstance(doc, dict):
        raise SweepError(f"--grid {path}: want a table of keys, e.g. formats = [\"q8.8\"]")
    axis_of = {k: a for a in AXES for k in a.grid_keys}
    kwargs = {}
    for key, value in doc.items():
        if key in axis_of:
            name = KWARG_OF_AXIS.get(axis_of[key].name, axis_of[key].name)
            if name in kwargs:
                raise SweepError(f"--grid {path}: {key} is given twice (under two names)")
            kwargs[name] = value
        elif key in SCALAR_KEYS:
            kwargs[SCALAR_KEYS[key]] = value
        else:
            known = sorted(set(axis_of) | set(SCALAR_KEYS))
            raise SweepError(f"--grid {path}: unknown key {key!r}: want some of {', '.join(known)}")
    return kwargs


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
