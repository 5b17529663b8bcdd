"""qgpt device pull: bring the board's checkpoint and log back as a run folder, as
`qgpt train` makes one (checkpoint.bin, config.json, losses.csv, summary.json)."""

import csv
import io
import json
import zlib
from dataclasses import asdict
from pathlib import Path

from qgpt import checkpoint
from qgpt.device import validate
from qgpt.device.errors import DeviceError
from qgpt.device.layout import (
    BOARD_CKPT,
    BOARD_CONFIG,
    BOARD_DEPLOY,
    BOARD_LOG,
    DEFAULT_RUN_DIR,
    HOST_LOG,
)
from qgpt.device.paths import (
    file_to_read,
    files_to_write,
    folder_to_write,
    make_folder,
    remove_if_empty,
)
from qgpt.device.session import CONNECT_TIMEOUT
from qgpt.device.stream import read_sessions
from qgpt.device.transfer import Board
from qgpt.policy import device_config


def state_hash(arrays):
    """The trainer's `done ... hash`: CRC32 of params, adam_m, adam_v (then the policy's
    block shifts and kahan_comp, docs/arithmetic.md 9.6) as int32 LE bytes."""
    crc = 0
    for name in ("params", "adam_m", "adam_v", "adam_m_shift", "adam_v_shift", "kahan_comp"):
        if name in arrays:
            crc = zlib.crc32(arrays[name].astype("<i4").tobytes(), crc)
    return f"{crc:08x}"


RUN_FILES = ("checkpoint.bin", "losses.csv", "config.json", "summary.json")  # pull writes


def pull(port, out, log_path=None, timeout=CONNECT_TIMEOUT, log=print):
    """Bring the board's checkpoint and log back into the run folder out (checkpoint.bin,
    config.json, losses.csv, summary.json), as `qgpt train` makes one. Returns the
    summary dict."""
    import numpy as np

    from qgpt.params import N_PARAMS

    out = folder_to_write(out, "--out")  # checked before the board is touched
    files_to_write(out, RUN_FILES + (HOST_LOG,), "--out")
    if log_path is not None:
        log_path = file_to_read(log_path, "--log")
    with Board(port, timeout) as board:
        info = board.info()
        cfg = board.get_json(BOARD_CONFIG) if board.crc(BOARD_CONFIG) else None
        if cfg is not None:
            validate.board_config(cfg, f"{port}:{BOARD_CONFIG}", port)
        ck_name = (cfg or {}).get("checkpoint", BOARD_CKPT)
        blob = board.get(ck_name)
        if blob is None:
            raise DeviceError(f"the board on {port} holds no checkpoint ({ck_name}): train first "
                              f"(qgpt device train --port {port})")
        deployed = board.get_json(BOARD_DEPLOY) if board.crc(BOARD_DEPLOY) else None
        if deployed is not None:
            validate.deploy_record(deployed, f"{port}:{BOARD_DEPLOY}", port)
        board_log = board.get(BOARD_LOG)
    source = f"{port}:{ck_name}"
    meta, arrays = checkpoint.decode(blob, source)  # corrupted, truncated, its header
    run_cfg, model = validate.check_run(meta, arrays, source)  # every field the host uses
    if (out / "checkpoint.bin").exists():
        old_meta, _ = checkpoint.load(out / "checkpoint.bin")
        old = old_meta.get("config", {}) if isinstance(old_meta, dict) else {}
        if not isinstance(old, dict) or any(old.get(k) != asdict(run_cfg).get(k)
                                            for k in validate.RUN_FIELDS):
            raise DeviceError(f"{out}: already holds another run; choose another --out")
    cfg, deployed = cfg or {}, deployed or {}
    val_nll, val_note = _validation_nll(model, deployed, log)
    rows = validate.log_rows(board_log, f"{port}:{BOARD_LOG}") if board_log else None

    step = meta["step"]
    if log_path is None:  # this run folder's, else the one train writes by default
        log_path = next((p for p in (out / HOST_LOG, Path(DEFAULT_RUN_DIR) / HOST_LOG)
                         if p.is_file()), out / HOST_LOG)
    log_path = Path(log_path)
    session = {**asdict(run_cfg), "data_crc32": deployed.get("data_crc32")}
    if hasattr(model, "policy"):  # the classes as the session line records them
        session["policy"] = device_config(model.policy)["policy"]
    stream_losses, samples, done = read_sessions(log_path, session)
    if rows is None:
        # streamed step N = N steps done: the loss of step index N - 1, as qgpt train counts
        rows = [(s - 1, v[0], v[1]) for s, v in sorted(stream_losses.items())]
    rows = [r for r in rows if 0 <= r[0] < step]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["step", "loss", "loss_q16"])
    w.writerows(rows)

    losses = [float(r[1]) for r in rows if r[1] is not None]
    complete = step >= run_cfg.steps
    summary = {
        "kind": model.kind, "format": run_cfg.format, "steps": run_cfg.steps, "step": step,
        "complete": complete, "seed": run_cfg.seed, "params": N_PARAMS,
        "train_loss_first100": float(np.mean(losses[:100])) if losses else None,
        "train_loss_last100": float(np.mean(losses[-100:])) if losses else None,
        "val_nll": val_nll, "seconds": meta.get("seconds"),
        "losses_from": "board log.csv" if board_log and rows else (
            str(log_path) if rows else "none (no board log, no host device.log)"),
        "device": {"port": port, "machine": info.machine, "micropython": info.version_text,
                   "arch": info.arch},
        "device_samples": samples if done and done.get("step") == step else [],
        "state_hash": state_hash(arrays),
        "board_hash": done.get("hash") if done and done.get("step") == step else None,
    }
    if hasattr(model, "summary_extra"):
        summary.update(model.summary_extra())
    if summary["board_hash"] not in (None, summary["state_hash"]):
        log(f"warning: the board's log says state hash {summary['board_hash']} at step {step}, "
            f"its checkpoint hashes to {summary['state_hash']} (a log of another run?)")
    summary["val_nll_note"] = val_note
    resolved = {"config": asdict(run_cfg), "device_config": cfg, "deploy": deployed,
                "board": asdict(info), "port": port}
    if hasattr(model, "policy"):
        resolved["policy"] = model.policy.describe()
    # everything is known: now the files, each atomically
    created = make_folder(out, "--out")
    try:
        checkpoint.write_atomic(out / "checkpoint.bin", blob)
        checkpoint.write_atomic(out / "losses.csv", buf.getvalue().encode())
        _write_json(out / "config.json", resolved)
        _write_json(out / "summary.json", summary)
        if log_path.is_file() and log_path.resolve() != (out / HOST_LOG).resolve():
            checkpoint.write_atomic(out / HOST_LOG, log_path.read_bytes())
    except OSError as e:
        remove_if_empty(created)
        raise DeviceError(f"--out {out}: cannot write the run there ({e.strerror or e})") \
            from None
    log(f"pulled step {step} of {run_cfg.steps} ({run_cfg.format}) from {port} into {out}; "
        f"sample it with: qgpt sample --checkpoint {out}")
    return summary


def _validation_nll(model, deployed, log):
    """(val_nll or None, what it was computed on or why not). The deploy recorded the
    names file's path and the CRC32 of its packed training names: the names, not the
    path, identify the dataset, so a file that changed since gives no val_nll."""
    from qgpt import data as names_data
    from qgpt import pack
    from qgpt import train as training

    src = deployed.get("source")
    if not src:
        return None, "the deploy recorded no names file"
    if not Path(src).is_file():
        return None, f"the deployed names file {src} is not on this host"
    try:
        ds = names_data.load(src, deployed["lowercase"], deployed["skip_long"])
    except names_data.DataError as e:
        return None, f"the deployed names file does not load ({e})"
    if zlib.crc32(pack.pack(ds.train)) != deployed["data_crc32"]:
        log(f"warning: {src} changed since it was deployed (its training names are not the "
            "board's): no val_nll")
        return None, f"{src} changed since it was deployed"
    if not ds.val:
        return None, f"{src} has no validation names"
    return training.nll(model, ds.val), f"{len(ds.val)} validation names of {src}"


def _write_json(path, obj):
    checkpoint.write_atomic(path, (json.dumps(obj, indent=2, sort_keys=True, default=str)
                                   + "\n").encode())
