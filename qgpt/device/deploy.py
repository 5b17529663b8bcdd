"""qgpt device deploy: check the board, compile and copy the firmware, the packed
dataset and qgpt.json; a checkpoint on the board is kept only for the same run."""

import time
import zlib
from pathlib import Path

from qgpt.device import inputs, validate
from qgpt.device.build import compile_firmware, mpy_cross_version
from qgpt.device.errors import BoardLost, BoardReset, DeviceError
from qgpt.device.identity import check_supported
from qgpt.device.layout import (
    BOARD_CKPT,
    BOARD_CONFIG,
    BOARD_DATA,
    BOARD_DEPLOY,
    BOARD_LOG,
    BOARD_RUN,
    RUN_KEYS,
)
from qgpt.device.session import CONNECT_TIMEOUT
from qgpt.device.transfer import Board


def _same_run(old_cfg, new_cfg):
    return all(old_cfg.get(k) == new_cfg.get(k) for k in RUN_KEYS + ("policy",))


def _previous_deploy(board, port):
    """(qgpt.json, qgpt-deploy.json) on the board, each None when absent or damaged
    (a damaged one cannot show that a checkpoint is of the same run)."""
    found = []
    for name, check in ((BOARD_CONFIG, validate.board_config),
                        (BOARD_DEPLOY, validate.deploy_record)):
        try:
            obj = board.get_json(name) if board.crc(name) else None
            found.append(check(obj, f"{port}:{name}", port) if obj is not None else None)
        except (BoardLost, BoardReset):
            raise
        except DeviceError:  # not JSON, or a field missing or mistyped
            found.append(None)
    return found


def deploy(port, data=None, fmt=None, rounding="nearest", master="", lr=0.01, seed=42,
           steps=1000, checkpoint_every=100, lowercase=False, skip_long=False,
           discard_checkpoint=False, timeout=CONNECT_TIMEOUT, firmware_dir=None,
           mpy_cross=None, log=print, policy=""):
    """Check the board, compile and copy the firmware, the packed dataset and qgpt.json.
    policy: a SPEC as for qgpt train --policy (fmt None with a preset; rounding None:
    the SPEC's), resolved and checked here; the config gets every class (arithmetic.md
    3.8). Returns the deploy record written to the board (qgpt-deploy.json)."""
    from qgpt import data as names_data
    from qgpt import pack
    from qgpt.policy import device_config, parse_policy

    master = "" if master in (None, "none") else master
    if not policy:
        fmt = fmt or "q4.12"
    # a bad format, master, lr or policy fails here, in qgpt train --policy's words
    resolved = parse_policy(policy or "", fmt, master or None, rounding, lr)
    fmt, rounding = resolved.weights.name, resolved.rounding
    ds = names_data.load(data or names_data.DEFAULT_DATA, lowercase, skip_long)
    packed = pack.pack(ds.train)
    emits = mpy_cross_version(mpy_cross)
    config = {**device_config(resolved),  # format, master, rounding, lr, lr_q30, policy
              # lr_q30 is exact from the host: a board's float may differ
              "steps": steps, "seed": seed, "data": BOARD_DATA, "checkpoint": BOARD_CKPT,
              "checkpoint_every": checkpoint_every, "resume": False, "samples": 20,
              "temperature": 0.5, "stop_at": None}
    with Board(port, timeout) as board:
        info = board.info()
        check_supported(info, emits)
        log(f"board: {info.describe()}")
        modules = compile_firmware(info.arch, firmware_dir, mpy_cross)
        old_cfg, old_deploy = _previous_deploy(board, port)
        ckpt = board.checkpoint_info()
        if ckpt is not None:
            step = ckpt["meta"].get("step", "?")
            same = (old_cfg is not None and _same_run(old_cfg, config) and old_deploy is not None
                    and old_deploy.get("data_crc32") == zlib.crc32(packed))
            started = board.get_json(BOARD_RUN) if board.crc(BOARD_RUN) else None
            changed = inputs.changes(started, inputs.from_host(config, packed, modules),
                                     settings=RUN_KEYS) if started else []
            if discard_checkpoint:
                board.remove(BOARD_CKPT)
                board.remove(BOARD_LOG)
                board.remove(BOARD_RUN)
                log(f"discarded the board's checkpoint (step {step})")
            elif same and not changed:
                log(f"kept the board's checkpoint (step {step}) of the same run: continue it "
                    f"with qgpt device train --port {port} --resume")
                config["steps"] = ckpt["meta"].get("config", {}).get("steps", steps)
            else:
                why = f" ({'; '.join(changed)} would change)" if changed and same else ""
                raise DeviceError(
                    f"the board holds a checkpoint (step {step}) of another run{why}: bring it "
                    f"back first (qgpt device pull --port {port} --out RUN_DIR), then deploy "
                    "with --discard-checkpoint")
        sizes = sum(map(len, modules.values())) + len(packed)
        if 0 <= info.fs_free < sizes + 16384:
            raise DeviceError(f"the board's filesystem has {info.fs_free // 1024} KB free; the "
                              f"firmware and dataset need {sizes // 1024 + 16} KB")
        board.remove(BOARD_DEPLOY)  # written last: its presence means a complete deploy
        present = set(board.listdir())
        copied = []
        for mod, blob in modules.items():
            if f"{mod}.py" in present:  # a board imports name.py before name.mpy
                board.remove(f"{mod}.py")
            if board.put(f"{mod}.mpy", blob):
                copied.append(f"{mod}.mpy")
        if board.put(BOARD_DATA, packed):
            copied.append(BOARD_DATA)
        board.put_json(BOARD_CONFIG, config)
        record = {"arch": info.arch, "micropython": info.version_text, "machine": info.machine,
                  "modules": sorted(modules), "source": str(Path(ds.path).resolve()),
                  "lowercase": lowercase, "skip_long": skip_long, "records": len(ds.train),
                  "val": len(ds.val), "data_crc32": zlib.crc32(packed),
                  "deployed": time.strftime("%Y-%m-%dT%H:%M:%S")}
        board.put_json(BOARD_DEPLOY, record)
    kept = len(modules) + 1 - len(copied)
    log(f"deployed {len(modules)} firmware modules (.mpy for {info.arch}), {len(ds.train)} "
        f"training names ({BOARD_DATA}, {len(packed) // 1024} KB) and {BOARD_CONFIG} "
        f"({fmt}, {rounding}, seed {seed}"
        + (f", policy {resolved.short_spec}" if policy else "") + f") to {port}"
        + (f"; {kept} files were already there" if kept else ""))
    return record
