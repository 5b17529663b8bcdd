"""The finished runs on disk, so that a sweep can be resumed.

    OUT/sweep.json            what decides the results (SweepConfig.key()) and the dataset's
                              sha256, written before the first run
    OUT/runs/<label>-<id>.json one finished run: its record (results.json's "runs" entry) and
                              its per-step training losses, written atomically as it finishes

A run's id is a hash of its resolved TrainConfig, so a file belongs to exactly one run. A
killed sweep loses only the runs in flight; `--resume` loads the finished ones and redoes
the rest, and refuses a folder whose sweep.json was written by other arguments.
"""

import hashlib
import json
import re
from dataclasses import asdict
from pathlib import Path

from qgpt import checkpoint
from qgpt.sweep.config import SweepError

MANIFEST = "sweep.json"
RUNS = "runs"
VERSION = 1


def run_id(run):
    """A file name for a run: its label (for people) and a hash of its TrainConfig."""
    text = json.dumps(asdict(run.config), sort_keys=True)
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", run.label).strip("-")
    return f"{slug}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def normalized(obj):
    """obj as it reads back from JSON: a fresh and a resumed sweep aggregate the same values."""
    return json.loads(json.dumps(obj))


def _differences(old, new):
    """The settings that differ between two SweepConfig.key() dicts, e.g. "steps 100 -> 200"."""
    out = []
    for name in sorted(set(old["grid"]) | set(new["grid"])):
        a, b = old["grid"].get(name), new["grid"].get(name)
        if a != b:
            out.append(f"{name} {','.join(map(str, a or []))} -> {','.join(map(str, b or []))}")
    for name in sorted(set(old) | set(new)):
        if name != "grid" and old.get(name) != new.get(name):
            out.append(f"{name} {old.get(name)} -> {new.get(name)}")
    return out


class RunStore:
    def __init__(self, out):
        self.out = Path(out)
        self.runs_dir = self.out / RUNS

    def check(self, sweep, dataset_sha256, resume):
        """Whether out may take this sweep: returns True when it resumes an earlier sweep with
        the same arguments, False for a fresh one. SweepError (one line) when out holds
        another sweep, or holds one and resume is off. Writes nothing."""
        manifest = self.out / MANIFEST
        if not manifest.exists():
            return False
        try:
            old = json.loads(manifest.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise SweepError(f"--out {self.out}: {MANIFEST} is unreadable ({e}); "
                             "choose another --out") from None
        if not resume:
            raise SweepError(f"--out {self.out}: holds a sweep already; pass --resume to "
                             "continue it, or choose another --out")
        if old.get("version") != VERSION:
            raise SweepError(f"--out {self.out}: holds a sweep of another qgpt version; "
                             "choose another --out")
        if old["sweep"] != sweep.key():
            diff = "; ".join(_differences(old["sweep"], sweep.key()))
            raise SweepError(f"--out {self.out}: holds a sweep with other arguments ({diff}); "
                             "resume with the same arguments, or choose another --out")
        if old.get("dataset_sha256") != dataset_sha256:
            raise SweepError(f"--out {self.out}: the names file {sweep.data} changed since "
                             "this sweep began; choose another --out")
        return True

    def begin(self, sweep, dataset_sha256):
        """Record the sweep in out (once: a resumed sweep keeps its sweep.json)."""
        manifest = self.out / MANIFEST
        self.runs_dir.mkdir(exist_ok=True)
        if not manifest.exists():
            key = {"version": VERSION, "sweep": sweep.key(), "dataset_sha256": dataset_sha256}
            checkpoint.write_atomic(manifest, (json.dumps(key, indent=1) + "\n").encode())

    def path(self, run):
        return self.runs_dir / f"{run_id(run)}.json"

    def load(self, run):
        """(record, losses) of a finished run, or None if it has not finished."""
        path = self.path(run)
        try:
            doc = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None  # not finished (files are written atomically: never half a file)
        if doc.get("record", {}).get("config") != normalized(asdict(run.config)):
            return None
        return doc["record"], doc["losses"]

    def save(self, run, record, losses):
        """Write a finished run atomically; returns (record, losses) as they read back."""
        self.runs_dir.mkdir(exist_ok=True)
        doc = normalized({"record": record, "losses": losses})
        checkpoint.write_atomic(self.path(run), json.dumps(doc).encode())
        return doc["record"], doc["losses"]
