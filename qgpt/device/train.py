"""qgpt device train: start or resume training on the board and stream its progress;
a reset, a lost connection or a trainer error names the last checkpoint on the board."""

import contextlib
import json
import sys
import time

from qgpt.device import inputs, validate
from qgpt.device.errors import BoardLost, BoardOutOfMemory, BoardReset, DeviceError
from qgpt.device.identity import check_supported
from qgpt.device.layout import (
    BOARD_CKPT,
    BOARD_CONFIG,
    BOARD_DEPLOY,
    BOARD_LOG,
    BOARD_RUN,
    DEFAULT_RUN_DIR,
    HOST_LOG,
    RUN_KEYS,
    TRAIN_MODULE,
)
from qgpt.device.paths import files_to_write, folder_to_write, make_folder
from qgpt.device.session import CONNECT_TIMEOUT, IDLE_TIMEOUT, classify_failure, py_str
from qgpt.device.stream import TrainStream
from qgpt.device.transfer import Board


def train(port, steps=None, checkpoint_every=None, resume=False, discard_checkpoint=False,
          stop_at=None, out=DEFAULT_RUN_DIR, timeout=CONNECT_TIMEOUT, idle_timeout=IDLE_TIMEOUT,
          progress=True, log=print):
    """Start (or resume) training on the board and stream its progress. Returns the
    TrainStream: start fields, losses, samples, the done line (step, hash)."""
    out = folder_to_write(out, "--out")  # checked before the board is touched
    files_to_write(out, [HOST_LOG], "--out")
    with Board(port, timeout) as board:
        info = board.info()
        check_supported(info)
        cfg = board.get_json(BOARD_CONFIG) if board.crc(BOARD_CONFIG) else None
        record = board.get_json(BOARD_DEPLOY) if board.crc(BOARD_DEPLOY) else None
        if cfg is None or record is None:
            raise DeviceError(f"nothing (or half) deployed on {port}: run qgpt device deploy "
                              f"--port {port} first")
        validate.board_config(cfg, f"{port}:{BOARD_CONFIG}", port)
        validate.deploy_record(record, f"{port}:{BOARD_DEPLOY}", port)
        if record.get("arch") != info.arch:
            raise DeviceError(f"the firmware on {port} was compiled for {record.get('arch')}, "
                              f"the board is {info.arch}: deploy again")
        ckpt = board.checkpoint_info(cfg.get("checkpoint", BOARD_CKPT))
        if ckpt is not None and not ckpt["valid"]:
            raise DeviceError(f"the board's checkpoint ({cfg.get('checkpoint', BOARD_CKPT)}) is "
                              "corrupted or truncated (CRC32 mismatch): train again with "
                              "--discard-checkpoint")
        ck_step = ckpt["meta"].get("step") if ckpt else None
        ck_steps = ckpt["meta"].get("config", {}).get("steps") if ckpt else None
        if ck_steps is not None and (not isinstance(ck_steps, int) or ck_steps < 1):
            raise DeviceError(f"the board's checkpoint says its run has {ck_steps!r} steps, "
                              "not a whole number >= 1: train again with --discard-checkpoint")
        if resume:
            if ckpt is None:
                raise DeviceError("nothing to resume: the board holds no checkpoint; drop "
                                  "--resume")
            if steps is not None and ck_steps is not None and steps != ck_steps:
                raise DeviceError(f"the board's checkpoint is of a {ck_steps}-step run (its "
                                  f"learning-rate schedule depends on it): drop --steps or "
                                  f"pass --steps {ck_steps}")
            steps = ck_steps or steps
        elif ckpt is not None:
            if not discard_checkpoint:
                raise DeviceError(f"the board holds a checkpoint (step {ck_step}): continue it "
                                  "with --resume, or start over with --discard-checkpoint")
            board.remove(cfg.get("checkpoint", BOARD_CKPT))
            board.remove(BOARD_LOG)
            board.remove(BOARD_RUN)
            log(f"discarded the board's checkpoint (step {ck_step})")
        if steps is not None:
            cfg["steps"] = steps
        if checkpoint_every is not None:
            cfg["checkpoint_every"] = checkpoint_every
        if resume:
            _check_inputs(board, cfg, record, ck_step, port, log)
        if stop_at is not None and not 0 < stop_at <= cfg["steps"]:
            raise DeviceError(f"--stop-at {stop_at}: want a step in 1..{cfg['steps']}")
        cfg["resume"] = bool(resume)
        cfg["stop_at"] = stop_at
        board.put_json(BOARD_CONFIG, cfg)
        if not resume:  # what this run depends on, for a resume to check
            board.put_json(BOARD_RUN, inputs.on_board(board, cfg, record.get("modules", [])))
        board.enter_raw_repl(soft_reset=True)  # train on a fresh heap

        make_folder(out, "--out")
        with open(out / HOST_LOG, "a") as log_file:
            # the session's run: its settings and dataset (pull skips other runs' sessions)
            session = {**{k: cfg.get(k) for k in RUN_KEYS}, "data_crc32": record["data_crc32"],
                       "policy": cfg.get("policy")}
            log_file.write(f"# qgpt device train {time.strftime('%Y-%m-%dT%H:%M:%S')} port={port} "
                           f"resume={int(bool(resume))} steps={cfg['steps']} "
                           f"run={json.dumps(session, sort_keys=True)}"
                           "\n")
            stream = TrainStream(log_file=log_file, progress=progress,
                                 echo=lambda s: print(s, file=sys.stderr))
            last_ckpt = ck_step if resume else None
            code = f"import {TRAIN_MODULE}\n{TRAIN_MODULE}.main({py_str(BOARD_CONFIG)})\n"
            try:
                _, err = board.run(code, stream.line, idle_timeout)
            except KeyboardInterrupt:
                board.interrupt()
                log_file.write("# interrupted on the host\n")
                raise
            except (BoardReset, BoardLost) as e:
                then = after_break_hint(stream, cfg, last_ckpt, port, isinstance(e, BoardLost))
                log_file.write(f"# {e}\n")
                raise type(e)(f"{e} during training, at step {stream.step}; {then}") from None
            failure = None
            if err.strip():
                failure = classify_failure(err, port)
            elif stream.error is not None:
                failure = trainer_error(stream.error, port)
            if failure is not None:
                log_file.write(f"# {failure}\n")
                saved = stream.ckpt if stream.ckpt is not None else last_ckpt
                if saved is None:  # a run that never saved leaves no record of its inputs
                    with contextlib.suppress(DeviceError):
                        board.remove(BOARD_RUN)
                raise type(failure)(f"{failure} (at step {stream.step}; last checkpoint: "
                                    f"{saved if saved is not None else 'none'})") from None
    if stream.done is None:
        raise DeviceError(f"the board's training ended at step {stream.step} without a 'done' "
                          "line")
    step, total = stream.done["step"], cfg["steps"]
    if step < total:
        log(f"device: stopped at step {step} of {total} as asked (--stop-at), state hash "
            f"{stream.done['hash']}; continue with qgpt device train --port {port} --resume")
    else:
        log(f"device: step {step}, state hash {stream.done['hash']}; bring it back with qgpt "
            f"device pull --port {port} --out RUN_DIR")
    for name in stream.samples:
        print(name)
    return stream


def _check_inputs(board, cfg, record, ck_step, port, log):
    """Refuse a resume when the settings, dataset or firmware on the board are not those
    the run started with (qgpt-run.json, written when it started)."""
    started = board.get_json(BOARD_RUN) if board.crc(BOARD_RUN) else None
    if started is None:
        log(f"note: the board keeps no record of this run's inputs ({BOARD_RUN}: a checkpoint "
            "of an older qgpt); resuming without checking its dataset and firmware")
        return
    changed = inputs.changes(started, inputs.on_board(board, cfg, record.get("modules", [])))
    if changed:
        raise DeviceError(
            f"the board's checkpoint (step {ck_step}) belongs to a run that started with other "
            f"inputs: {'; '.join(changed)} changed since; a resume needs the same ones: deploy "
            f"those again, or bring the checkpoint back (qgpt device pull --port {port} --out "
            "RUN_DIR) and start over with --discard-checkpoint")


def next_checkpoint(cfg, after):
    """The first step after `after` at which the trainer saves a checkpoint: every
    checkpoint_every steps, at the last step and at stop_at (firmware/qgpt_train.py)."""
    steps, every = cfg["steps"], cfg.get("checkpoint_every") or 0
    due = [steps] + ([cfg["stop_at"]] if cfg.get("stop_at") else [])
    if every:
        due.append((after // every + 1) * every)
    end = min(steps, cfg["stop_at"]) if cfg.get("stop_at") else steps  # training stops there
    later = [d for d in due if after < d <= end]
    return min(later) if later else None


def after_break_hint(stream, cfg, known, port, lost=False):
    """What the board holds after a reset (lost=False) or a lost connection, and what
    to do.

    The trainer prints `step N`, then saves the checkpoint due at N, then prints
    `ckpt N`: a reset between the two leaves a checkpoint the host was never told of,
    so one due within a step line (log_every steps) of the last step reported may be
    on the board. A lost connection loses, besides, every line still in transit (the
    host may be many steps behind the board, and a board that keeps power trains on):
    then any checkpoint due after the last one reported may be there."""
    confirmed = stream.ckpt if stream.ckpt is not None else known
    start = confirmed if confirmed is not None else int(stream.start.get("from", 0))
    due = next_checkpoint(cfg, start)
    reach = stream.step + max(1, int(cfg.get("log_every", 1)))
    resume = f"continue with qgpt device train --port {port} --resume"
    if due is not None and (lost or due <= reach):
        since = ("after the last line that arrived" if lost else
                 "before its report was lost")
        if confirmed is not None:
            later = f"step {due} or later" if lost else f"step {due}"
            return (f"its last checkpoint is step {confirmed}, or {later} if the board wrote "
                    f"one {since}: {resume}")
        at = f"at step {due} or later" if lost else f"at step {due}"
        return (f"the board may have written a checkpoint {at} {since}: {resume} (if it "
                f"holds none, start again with qgpt device train --port {port})")
    if confirmed is not None:
        return f"its last checkpoint (step {confirmed}) is on the board: {resume}"
    return f"no checkpoint was written yet: start again with qgpt device train --port {port}"


def trainer_error(message, port):
    """The DeviceError for the trainer's own 'error MESSAGE' line."""
    if "out of memory" in message:
        return BoardOutOfMemory(f"the board ran out of memory ({message}): use a board with "
                                "more RAM (PSRAM), or free its heap (a soft reset; no other "
                                "modules loaded)")
    return DeviceError(f"the board's trainer stopped: {message}")
