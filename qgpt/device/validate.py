"""The files the device commands read from the board, checked field by field before
they are used. A CRC32 that passes says the bytes are the ones the board wrote, not
that they are a run qgpt can load: a header that is not a checkpoint's, a missing or
mistyped field, an array of the wrong size or dtype, a format label its arrays
disagree with, each is one error naming the file and the field.

    checkpoint     check_run, after checkpoint.decode (CheckpointError)
    qgpt.json      board_config                  (DeviceError)
    qgpt-deploy    deploy_record                 (DeviceError)
    log.csv        log_rows                      (DeviceError)
"""

import csv
import io
import math
from dataclasses import MISSING, fields

from qgpt import checkpoint
from qgpt.checkpoint import CheckpointError
from qgpt.device.errors import DeviceError
from qgpt.policy import UPDATE_ROUNDINGS

RUN_FIELDS = ("format", "rounding", "master", "lr", "seed", "steps")  # a checkpoint's run
STATE_ARRAYS = ("params", "adam_m", "adam_v")
INT_META = ("p1", "p2", "stalled_total", "steps_taken")  # an integer run's optimizer state


def _whole(x):
    return isinstance(x, int) and not isinstance(x, bool)


def _number(x):
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _show(value):
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# --- the checkpoint ---


def check_run(meta, arrays, source):
    """(TrainConfig, model) of a decoded checkpoint, after checking every field the
    host uses: the config, the kind and step, the optimizer state, the three arrays
    (names, sizes, dtypes) and that the arrays fit the format the config names."""
    from qgpt import train as training

    def fail(what):
        raise CheckpointError(f"{source}: {what}; this qgpt cannot load it")

    if not isinstance(meta, dict):
        fail("its meta is not an object")
    config = meta.get("config")
    if not isinstance(config, dict):
        fail("meta.config is missing or not an object")
    run_cfg = _train_config(config, fail)
    kind = "float" if run_cfg.format == "float" else "int"
    if meta.get("kind") != kind:
        fail(f"meta.kind {_show(meta.get('kind'))} disagrees with config.format "
             f"{run_cfg.format!r} (want {kind!r})")
    step = meta.get("step")
    if not _whole(step) or not 0 <= step <= run_cfg.steps:
        fail(f"meta.step {_show(step)}: want a whole number in 0..{run_cfg.steps}")
    if meta.get("seconds") is not None and not (_number(meta["seconds"])
                                                and meta["seconds"] >= 0):
        fail(f"meta.seconds {_show(meta['seconds'])}: want a number of seconds")
    if kind == "int":
        for name in INT_META:
            if not _whole(meta.get(name)) or meta[name] < 0:
                fail(f"meta.{name} is {_show(meta.get(name))}: want a whole number >= 0")
        saturations = meta.get("saturations")
        if not isinstance(saturations, dict) or not all(
                isinstance(k, str) and _whole(v) for k, v in saturations.items()):
            fail(f"meta.saturations is {_show(saturations)}: want {{name: count}}")
    _check_arrays(arrays, run_cfg, kind, fail)
    try:
        model = training.make_model(run_cfg)
        model.load_state(meta, arrays)
    except (KeyError, ValueError, TypeError) as e:
        fail(f"it does not load as a {run_cfg.format} run ({type(e).__name__}: {e})")
    return run_cfg, model


def _train_config(config, fail):
    """The TrainConfig of a checkpoint's meta.config: every field known, of its type;
    the run's own fields present; the format and rounding ones qgpt knows."""
    from qgpt import qformat
    from qgpt import train as training

    known = {f.name: f.default for f in fields(training.TrainConfig)}
    for key in config:
        if key not in known:
            fail(f"config.{key} is not a training setting")
    for key in RUN_FIELDS:
        if key not in config:
            fail(f"config.{key} is missing")
    for key, value in config.items():
        default = known[key]
        if default is MISSING or default is None:
            continue
        want = type(default)
        ok = _number(value) if want is float else (
            isinstance(value, want) and not (want is int and isinstance(value, bool)))
        if not ok:
            fail(f"config.{key} is {_show(value)}: want {want.__name__}")
    for key, low in (("steps", 1), ("checkpoint_every", 0)):
        if key in config and config[key] < low:
            fail(f"config.{key} is {config[key]}: want a whole number >= {low}")
    if config["lr"] <= 0:
        fail(f"config.lr is {config['lr']}: want a learning rate above 0")
    if config["format"] != "float":
        try:
            qformat.parse(config["format"])
        except ValueError as e:
            fail(f"config.format {config['format']!r} is not a format qgpt trains ({e})")
    if config["rounding"] not in UPDATE_ROUNDINGS:
        fail(f"config.rounding {_show(config['rounding'])}: want one of "
             f"{', '.join(UPDATE_ROUNDINGS)}")
    return training.TrainConfig(**config)


def _check_arrays(arrays, run_cfg, kind, fail):
    """The three state arrays: present, alone, N_PARAMS values each, int32 for an integer
    run (within its weight format's range; adam_v >= 0) and finite float64 for float."""
    import numpy as np

    from qgpt.params import N_PARAMS

    policy_arrays = ()  # 9.6's arrays of the run's policy (block shifts, kahan_comp)
    if kind == "int":
        from qgpt.int_model import IntAdam
        from qgpt.policy import from_train_config

        try:
            policy = from_train_config(run_cfg)
        except ValueError as e:
            fail(f"its settings are not a policy qgpt trains ({e})")
        policy_arrays = [k for k in IntAdam(policy, 0).arrays() if k not in STATE_ARRAYS]
    extra = sorted(set(arrays) - set(STATE_ARRAYS) - set(policy_arrays))
    if extra:
        fail(f"it holds array {extra[0]}, which no qgpt run writes")
    code = "i4" if kind == "int" else "f8"
    for name in STATE_ARRAYS:
        if name not in arrays:
            fail(f"array {name} is missing")
        a = arrays[name]
        if a.size != N_PARAMS:
            fail(f"array {name} holds {a.size} values, want {N_PARAMS}")
        if a.dtype != checkpoint.DTYPES[code]:
            fail(f"array {name} is {a.dtype.str[1:]}, want {code} for a {run_cfg.format} run")
    if kind == "float":
        for name in STATE_ARRAYS:
            bad = np.flatnonzero(~np.isfinite(arrays[name]))
            if bad.size:
                fail(f"array {name}[{bad[0]}] is {arrays[name][bad[0]]}, not a finite number")
        return
    store = policy.weight_store
    params = arrays["params"]
    outside = (params < store.lo) | (params > store.hi)
    if outside.any():
        i = int(outside.argmax())
        fail(f"array params[{i}] = {int(params[i])} lies outside {store.name} "
             f"({store.lo}..{store.hi}): its arrays are not of the format config.format and "
             f"config.master say")
    if (arrays["adam_v"] < 0).any():
        i = int((arrays["adam_v"] < 0).argmax())
        fail(f"array adam_v[{i}] = {int(arrays['adam_v'][i])} is negative (a second moment)")


# --- the board's JSON files and its loss log ---

CONFIG_FIELDS = {"format": str, "rounding": str, "master": str, "lr": float, "seed": int,
                 "steps": int, "data": str, "checkpoint": str, "checkpoint_every": int}
DEPLOY_FIELDS = {"arch": str, "modules": list, "data_crc32": int, "source": str,
                 "lowercase": bool, "skip_long": bool}


def _check_fields(obj, wanted, source, then):
    if not isinstance(obj, dict):
        raise DeviceError(f"{source}: not a JSON object; {then}")
    for key, want in wanted.items():
        value = obj.get(key)
        ok = _number(value) if want is float else (
            isinstance(value, want) and not (want is int and isinstance(value, bool)))
        if not ok:
            what = "missing" if key not in obj else f"{_show(value)}"
            raise DeviceError(f"{source}: field {key} is {what}, want {want.__name__}; {then}")
    return obj


def board_config(cfg, source, port):
    """The board's qgpt.json, with the fields the host uses checked."""
    then = f"deploy again (qgpt device deploy --port {port})"
    _check_fields(cfg, CONFIG_FIELDS, source, then)
    for key, low in (("steps", 1), ("checkpoint_every", 0)):
        if cfg[key] < low:
            raise DeviceError(f"{source}: field {key} is {cfg[key]}, want >= {low}; {then}")
    for key in ("data", "checkpoint"):
        if not cfg[key] or "/" in cfg[key] or cfg[key].startswith("."):
            raise DeviceError(f"{source}: field {key} {cfg[key]!r} is not a file name in the "
                              f"board's folder; {then}")
    return cfg


def deploy_record(record, source, port):
    """The board's qgpt-deploy.json, with the fields the host uses checked."""
    then = f"deploy again (qgpt device deploy --port {port})"
    _check_fields(record, DEPLOY_FIELDS, source, then)
    if not all(isinstance(m, str) for m in record["modules"]):
        raise DeviceError(f"{source}: field modules holds a non-name; {then}")
    return record


def log_rows(blob, source):
    """Rows (step, loss, loss_q16) of the board's log.csv (a header naming step and
    loss; loss_q16 optional); a bad row names its line and field."""
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError:
        raise DeviceError(f"{source}: not text (UTF-8)") from None
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or not {"step", "loss"} <= set(reader.fieldnames):
        raise DeviceError(f"{source}: its header {reader.fieldnames} names no step and loss "
                          "columns")
    rows = []
    for row in reader:
        line = reader.line_num
        try:
            step = int(row["step"])
            loss = float(row["loss"])
        except (TypeError, ValueError):
            field = "step" if not (row["step"] or "").strip().isdigit() else "loss"
            raise DeviceError(f"{source} line {line}: field {field} is {_show(row[field])}, "
                              "want a number") from None
        if step < 0 or not math.isfinite(loss):
            raise DeviceError(f"{source} line {line}: step {step}, loss {loss}: want a step "
                              ">= 0 and a finite loss")
        q16 = (row.get("loss_q16") or "").strip()
        if q16 and not q16.lstrip("-").isdigit():
            raise DeviceError(f"{source} line {line}: field loss_q16 is {_show(q16)}, want a "
                              "whole number")
        rows.append((step, loss, int(q16) if q16 else None))
    return rows
