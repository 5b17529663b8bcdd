"""The axes of a sweep's grid: one table from which the options, the grid file's keys, the runs,
results.csv's columns, the labels, the tables and the plots all follow.

An axis is a TrainConfig field the sweep varies. Every integer run is one point of the product
of all axes' values (in the order of AXES) times the seeds. The float reference runs at every
point of the axes that apply to it (integer_only=False: lr, steps), with format "float" and
None for the others.

Adding an axis (the precision policy's `--policy SPEC`, issue 12) is one entry in AXES whose
name is a TrainConfig field (here TrainConfig.policy: str = "", the label of a policy):

    Axis("policy", "--policy", "precision policy: CLASS=FORMAT pairs, a JSON file or a "
         "preset (repeatable)", parse=_label, default=("",), integer_only=True,
         repeatable=True, grid_keys=("policies", "policy")),

Nothing else in qgpt/sweep changes. Each integer run's TrainConfig gets policy=<value>, and
make_config builds every run's model once (make_model, no training) so a bad policy is one
line before any run; the option (given once per value, since a policy holds commas), the grid
file's key, results.csv's and runs.csv's column, the labels, the `qgpt train` command of each
run (the same option), the resume check and --group-by policy all follow from the entry. The
default ("",) is what runs when the option is not given (TrainConfig's own default); it stays
out of labels and of the printed command. The position in AXES is the column order and the
order of the grid's product.
"""

import shlex
from dataclasses import dataclass, field

from qgpt import qformat
from qgpt.policy import UPDATE_ROUNDINGS
from qgpt.runconfig import check_lr, check_steps


class AxisError(ValueError):
    """A bad value on an axis, worded for the user (raised again as a SweepError)."""


def _format(value):
    text = str(value).strip()
    if text == "":
        return ""  # the weights and acts of --policy (or q4.12 without one)
    if text.lower() == "float":
        raise AxisError("the float reference always runs; list only Q formats")
    try:
        return qformat.parse(text).name
    except qformat.FormatError as e:
        raise AxisError(str(e)) from None


def _rounding(value):
    text = str(value).strip()
    if text not in UPDATE_ROUNDINGS:
        raise AxisError(f"{text!r} is unknown: want one or more of {', '.join(UPDATE_ROUNDINGS)}, "
                        "comma-separated")
    return text


def _master(value):
    text = str(value).strip()
    if text.lower() in ("", "none"):
        return text.lower()  # "": the policy's default; "none": no master weights
    try:
        return qformat.parse(text, max_bits=qformat.WIDE_MAX_BITS).name
    except qformat.FormatError as e:
        raise AxisError(str(e)) from None


def _lr(value):
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise AxisError(f"{value!r} is not a number") from None
    try:
        return check_lr(value)
    except ValueError as e:
        raise AxisError(str(e)) from None


def _steps(value):
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise AxisError(f"{value!r} is not a whole number") from None
    try:
        return check_steps(value)
    except ValueError as e:
        raise AxisError(str(e)) from None


def _label(value):
    """A free-form label (a policy spec, a file name): kept as written, minus outer spaces."""
    return str(value).strip()


@dataclass(frozen=True)
class Axis:
    name: str  # TrainConfig field, results.csv column, grid-file key
    option: str  # command-line option
    help: str
    parse: object  # one value as the user wrote it -> its canonical value; AxisError if bad
    default: tuple = ()  # the values when the option is not given; () = required
    integer_only: bool = False  # True: the float reference does not vary along it (None)
    repeatable: bool = False  # the option is given once per value; else comma-separated
    grid_keys: tuple = field(default=())  # names a grid file may use for it

    def show(self, value):
        """The value as labels, tables and plots print it."""
        if value is None:
            return "-"
        if value == "":
            return "default"
        return f"{value:g}" if isinstance(value, float) else str(value)

    def command_parts(self, values):
        """The options that give these values on the command line ([] for the default)."""
        if tuple(values) == ("",):
            return []
        if self.repeatable:
            return [f"{self.option} {shlex.quote(self.show(v))}" for v in values]
        return [f"{self.option} {self.join(values)}"]

    def join(self, values):
        return ",".join(self.show(v) for v in values)

    def in_label(self, values):
        """Whether labels and tables name this axis: format and rounding always, the others
        when they vary, and a label axis (default "") when it is set."""
        return self.name in ("format", "rounding") or len(values) > 1 or (
            self.default == ("",) and tuple(values) != self.default)


AXES = (
    Axis("format", "--formats", "comma-separated Q formats, e.g. q8.8,q4.12 (may be left out "
         "when --policy is given: each policy's own weights and acts)",
         parse=_format, integer_only=True, grid_keys=("formats", "format")),
    Axis("policy", "--policy", "precision policy: CLASS=FORMAT pairs, a JSON file or a preset "
         "such as int8 (repeatable; docs/arithmetic.md, section 3)", parse=_label, default=("",),
         integer_only=True, repeatable=True, grid_keys=("policies", "policy")),
    Axis("rounding", "--rounding",
         f"comma-separated weight-update roundings: {','.join(UPDATE_ROUNDINGS)} (default "
         "nearest)",
         parse=_rounding, default=("nearest",), integer_only=True,
         grid_keys=("roundings", "rounding")),
    Axis("master", "--master",
         "comma-separated master-weight formats for integer runs, e.g. q8.16 or none "
         "(default: the policy's own)",
         parse=_master, default=("",), integer_only=True, grid_keys=("masters", "master")),
    Axis("steps", "--steps", "comma-separated training steps per run (default 1000)",
         parse=_steps, default=(1000,), grid_keys=("steps",)),
    Axis("lr", "--lr", "comma-separated peak learning rates (default 0.01)",
         parse=_lr, default=(0.01,), grid_keys=("lr", "lrs")),
)

AXIS_BY_NAME = {a.name: a for a in AXES}


def split_values(axis, given):
    """A user's values for axis (a comma-separated string, a number, or a list of either, or
    a list of option uses for a repeatable axis) as a list of raw values."""
    if isinstance(given, (list, tuple)):
        items = list(given)
    else:
        items = [given]
    if axis.repeatable:
        return items
    out = []
    for item in items:
        if isinstance(item, str):
            out += [t.strip() for t in item.split(",") if t.strip()]
        else:
            out.append(item)
    return out
