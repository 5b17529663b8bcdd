"""The device trainer's output, line by line: parsed as it streams in (TrainStream,
parse_line), and read back from the host's device.log (read_sessions)."""

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from qgpt.device.errors import DeviceError
from qgpt.device.layout import RUN_KEYS


@dataclass
class TrainStream:
    """What the board's training printed, parsed line by line as it arrives."""

    log_file: object = None  # appended to, line by line
    progress: bool = True
    echo: object = None  # where other lines go (a callable)
    start: dict = field(default_factory=dict)  # the 'qgpt start' fields
    step: int = 0  # the last step reported
    ckpt: int | None = None  # the last checkpoint the board wrote
    losses: list = field(default_factory=list)  # (step, loss, loss_q16)
    samples: list = field(default_factory=list)
    done: dict | None = None  # the 'done' fields: step, hash, ...
    error: str | None = None  # an 'error MESSAGE' line: the trainer refused or failed
    _bar: object = None

    def line(self, text):
        if self.log_file:
            self.log_file.write(text + "\n")
            self.log_file.flush()
        parsed = parse_line(text)
        kind = parsed[0]
        if kind == "start":
            self.start = parsed[1]
            self.step = int(self.start.get("from", 0))
            if self.progress and "steps" in self.start:
                from qgpt.progress import Progress

                self._bar = Progress(int(self.start["steps"]), label="device", start=self.step)
        elif kind == "step":
            self.step, fields = parsed[1], parsed[2]
            loss = fields.get("loss")
            self.losses.append((self.step, loss, fields.get("loss_q16")))
            recent = [x[1] for x in self.losses[-100:] if x[1] is not None]
            if self._bar:  # the mean of the last 100 losses, as qgpt train shows
                self._bar.update(self.step, **({"loss": sum(recent) / len(recent)}
                                               if recent else {}))
        elif kind == "ckpt":
            self.ckpt = parsed[1]
        elif kind == "sample":
            self.samples.append(parsed[1])
        elif kind == "done":
            self.done = parsed[1]
            self.step = self.done["step"]
        elif kind == "error":
            self.error = parsed[1]
        elif self.echo and text.strip():
            self.echo(f"board: {text}")


def _number(text):
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def parse_line(text):
    """One line of the device trainer's output -> (kind, ...):

        qgpt start format=q4.12 steps=1000 from=0          ("start", {key: value})
        step 10 loss_q16 153456 loss 2.3416 rate 12.3      ("step", 10, {name: number})
        ckpt 100                                           ("ckpt", 100)
        sample kalen                                       ("sample", "kalen")
        done step 1000 hash 1a2b3c4d heap_peak 70123 ...   ("done", {"step": 1000, "hash": ...})
        error MESSAGE                                      ("error", "MESSAGE")
    A step number counts the steps done (firmware/qgpt_train.py); anything else, such as
    'note ...', is ("other", text)."""
    t = text.strip()
    if t.startswith("qgpt start"):
        fields = dict(kv.split("=", 1) for kv in t.split()[2:] if "=" in kv)
        return "start", {k: _number(v) for k, v in fields.items()}
    m = re.match(r"step (\d+)((?: \S+ \S+)*)$", t)
    if m:
        words = m.group(2).split()
        return "step", int(m.group(1)), {words[i]: _number(words[i + 1])
                                         for i in range(0, len(words) - 1, 2)}
    m = re.match(r"ckpt (\d+)$", t)
    if m:
        return "ckpt", int(m.group(1))
    if t.startswith("sample"):
        return "sample", t[len("sample") :].strip()
    m = re.match(r"done step (\d+) hash ([0-9a-fA-F]+)(.*)$", t)
    if m:
        rest = m.group(3).split()
        extra = {rest[i]: _number(rest[i + 1]) for i in range(0, len(rest) - 1, 2)}
        return "done", {**extra, "step": int(m.group(1)), "hash": m.group(2).lower()}
    if t.startswith("error "):
        return "error", t[len("error ") :].strip()
    return "other", t



def _bad_log(where, what):
    return DeviceError(f"{where}: {what}; not a log qgpt device train wrote (give another "
                       "with --log)")


def read_sessions(path, run=None):
    """The host's device.log -> losses {step: (loss, loss_q16)} of the latest run, its
    samples and done fields. A session without resume starts a new run; a resumed one
    replaces the steps after its starting point. run: {format, rounding, master, lr,
    seed}, the dataset's data_crc32 and policy (the device config's classes); sessions
    of other settings, of another policy or of another dataset are skipped."""
    losses, samples, done = {}, [], None
    if not path or not Path(path).is_file():
        return losses, samples, done
    skipping = False
    lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    for number, text in enumerate(lines, 1):
        where = f"{path} line {number}"
        if text.startswith("# qgpt device train"):
            header = text.split(" run=", 1)
            try:
                settings = json.loads(header[1]) if len(header) > 1 else None
            except ValueError:
                raise _bad_log(where, "its run= settings are not JSON") from None
            if settings is not None and not isinstance(settings, dict):
                raise _bad_log(where, "its run= settings are not a JSON object")
            skipping = run is not None and settings is not None and (
                any(settings.get(k) != run.get(k) for k in RUN_KEYS)
                or any(k in settings and k in run and settings[k] != run[k]  # older logs
                       for k in ("data_crc32", "policy")))  # lack these
            if not skipping:
                if "resume=0" in text.split():
                    losses, done = {}, None
                samples = []
            continue
        if skipping:
            continue
        kind, *rest = parse_line(text)
        if kind == "start":
            start = rest[0].get("from", 0)
            if not isinstance(start, int):
                raise _bad_log(where, f"field from is {start!r}, want a whole number")
            losses = {s: v for s, v in losses.items() if s <= start}
        elif kind == "step":
            loss, loss_q16 = rest[1].get("loss"), rest[1].get("loss_q16")
            if not isinstance(loss, int | float) or not isinstance(loss_q16, int | None):
                raise _bad_log(where, f"step {rest[0]}: loss {loss!r}, loss_q16 {loss_q16!r}, "
                               "want numbers")
            losses[rest[0]] = (loss, loss_q16)
        elif kind == "sample":
            samples.append(rest[0])
        elif kind == "done":
            done = rest[0]
    return losses, samples, done
