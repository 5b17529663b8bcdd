"""Float state dicts as JSON: {tensor name: nested lists}, with microgpt's names.

`qgpt export` writes a run's weights as standard JSON (never NaN or Infinity);
`qgpt import` reads one back, checking every tensor, shape and number, and makes a
run folder of it (step 0) to sample or export.
"""

import json
import math
from pathlib import Path

import numpy as np

from qgpt import checkpoint
from qgpt.params import N_PARAMS, SLOTS, views
from qgpt.train import FloatModel, RunError, TrainConfig, save_state


def export_state_dict(model, path):
    sd = {k: v.tolist() for k, v in views(model.float_params()).items()}
    try:
        text = json.dumps(sd, allow_nan=False)  # standard JSON: never NaN or Infinity
    except ValueError:
        raise RunError("the weights hold values that are not finite; nothing written") from None
    checkpoint.write_atomic(path, text.encode())


def write_imported_run(out, flat):
    """A run folder at out holding float weights flat (step 0): to sample or export."""
    cfg = TrainConfig(steps=1, checkpoint_every=1)
    model = FloatModel(cfg)
    model.flat = flat
    save_state(out, model, cfg, 0, 0.0)


class _NonFinite(str):
    """NaN, Infinity or -Infinity as the JSON text had it (refused with its tensor's name)."""


def import_state_dict(path):
    """A flat float64 parameter buffer from a JSON state dict: every tensor present, with
    its shape, of finite numbers (not booleans, strings or nulls); RunError naming the
    file and the tensor (and index) otherwise."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
        sd = json.loads(text, parse_constant=_NonFinite)
    except FileNotFoundError:
        raise RunError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise RunError(f"{path}: is a folder, not a JSON state dict") from None
    except OSError as e:
        raise RunError(f"{path}: cannot read it ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise RunError(f"{path}: cannot read a JSON state dict (not UTF-8 text)") from None
    except json.JSONDecodeError as e:
        raise RunError(f"{path}: cannot read a JSON state dict ({e})") from None
    except RecursionError:
        raise RunError(f"{path}: cannot read a JSON state dict (nested too deeply)") from None
    if not isinstance(sd, dict):
        raise RunError(f"{path}: want a JSON object {{tensor name: nested lists}}, not "
                       f"{_json_kind(sd)}")
    flat = np.empty(N_PARAMS)
    for s in SLOTS:
        if s.name not in sd:
            raise RunError(f"{path}: tensor {s.name} is missing")
        values = []
        problem = _walk_tensor(sd[s.name], s.shape, s.name, (), values)
        if problem:
            raise RunError(f"{path}: {problem}")
        flat[s.offset : s.offset + s.size] = values
    extra = set(sd) - {s.name for s in SLOTS}
    if extra:
        raise RunError(f"{path}: unknown tensors {sorted(extra)[:5]}")
    return flat


def _json_kind(v):
    if isinstance(v, _NonFinite):
        return v
    if isinstance(v, bool):
        return f"the boolean {str(v).lower()}"
    return {str: "a string", dict: "an object", list: "a list", type(None): "null"}.get(
        type(v), repr(v)[:20])


def _walk_tensor(v, shape, name, index, values):
    """Append the numbers of nested lists v (of shape) to values; a message if they are not."""
    where = name + "".join(f"[{i}]" for i in index)
    depth = len(index)
    if depth == len(shape):
        if isinstance(v, bool | _NonFinite) or not isinstance(v, int | float):
            return f"tensor {where} is {_json_kind(v)}: want a finite number"
        try:
            x = float(v)
        except OverflowError:
            x = math.inf
        if not math.isfinite(x):
            return f"tensor {where} is {str(v)[:20]}: want a finite number"
        values.append(x)
        return None
    if not isinstance(v, list):
        return f"tensor {where} is {_json_kind(v)}: want a list of {shape[depth]}"
    if len(v) != shape[depth]:
        if depth == 0:
            return f"tensor {name} has shape {_outer_shape(v)}, want {shape}"
        return f"tensor {where} has {len(v)} entries, want {shape[depth]} (ragged lists)"
    for i, x in enumerate(v):
        problem = _walk_tensor(x, shape, name, (*index, i), values)
        if problem:
            return problem
    return None


def _outer_shape(v):
    """The shape nested lists v would have if every list were like its first."""
    shape = []
    while isinstance(v, list):
        shape.append(len(v))
        v = v[0] if v else None
    return tuple(shape)
