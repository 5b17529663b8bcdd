"""The simulator's integers, hashed: 150 steps of 51 configurations, step by step and in
batches of 50 (train.training_steps' loss_batch), each run's every loss (the float's
bits), telemetry, final state arrays, saturation counts and summary.

A speed change must leave every hash as it was. Run it on the code to compare (the
qgpt first on the path: PYTHONPATH) and compare the two outputs:

    PYTHONPATH=/tmp/main-copy python experiments/hostperf/hashcheck.py --out /tmp/main.json
    PYTHONPATH=$PWD python experiments/hostperf/hashcheck.py --out /tmp/this.json \\
        --compare /tmp/main.json

Needs ../shared/data/names-makemore.txt (or --data).
"""

import argparse
import hashlib
import json
import sys
import time

import numpy as np

from qgpt import data
from qgpt.runconfig import TrainConfig
from qgpt.train import make_model, training_steps

STEPS = 150
BATCHES = (1, 50)
SIXTEEN_BIT = ("q2.14", "q3.13", "q4.12", "q5.11", "q6.10", "q8.8", "q10.6", "q12.4")


def configs():
    """(name, TrainConfig fields) of the 51 runs: 8 formats x 3 roundings, and 27 others."""
    out = []
    for fmt in SIXTEEN_BIT:
        for rounding in ("nearest", "floor", "stochastic"):
            out.append((f"{fmt} {rounding}", dict(format=fmt, rounding=rounding)))
    others = [
        ("q4.12 pseudo", dict(format="q4.12", rounding="pseudo")),
        ("q8.8 pseudo", dict(format="q8.8", rounding="pseudo")),
        ("q4.12 kahan", dict(format="q4.12", rounding="kahan")),
        ("q8.8 kahan", dict(format="q8.8", rounding="kahan")),
        ("int8", dict(format="q2.6", policy="int8", rounding="kahan")),
        ("int8 nearest", dict(format="q2.6", policy="int8", rounding="nearest")),
        ("int8 stochastic", dict(format="q2.6", policy="int8", rounding="stochastic")),
        ("q4.12 master q4.20", dict(format="q4.12", master="q4.20")),
        ("q4.12 master q4.20 stochastic", dict(format="q4.12", master="q4.20",
                                                rounding="stochastic")),
        ("q4.8 master q4.16", dict(format="q4.8", master="q4.16")),
        ("q12.0 master q12.8", dict(format="q12.0", master="q12.8")),
        ("weights=q2.6,acts=q4.4", dict(format="q2.6", policy="weights=q2.6,acts=q4.4")),
        ("weights=q2.6,acts=q4.4 stochastic", dict(format="q2.6", rounding="stochastic",
                                                   policy="weights=q2.6,acts=q4.4")),
        ("b8x64 state", dict(format="q4.12", policy="adam_m=b8x64,adam_v=b8x64")),
        ("b16x256/b4x8 state", dict(format="q4.12", policy="adam_m=b16x256,adam_v=b4x8")),
        ("q4.12 strict", dict(format="q4.12", strict=True)),
        ("q8.8 stochastic strict", dict(format="q8.8", rounding="stochastic", strict=True)),
        ("int8 strict", dict(format="q2.6", policy="int8", rounding="kahan", strict=True)),
        ("q4.12 lr 0.5", dict(format="q4.12", lr=0.5)),
        ("q4.12 lr 0.9", dict(format="q4.12", lr=0.9)),
        ("q8.8 lr 0.5 stochastic", dict(format="q8.8", lr=0.5, rounding="stochastic")),
        ("q8.8 lr 0.9", dict(format="q8.8", lr=0.9)),
        ("q2.14 lr 0.7", dict(format="q2.14", lr=0.7)),
        ("q6.6 lr 0.7 stochastic", dict(format="q6.6", lr=0.7, rounding="stochastic")),
        ("int8 lr 0.5", dict(format="q2.6", policy="int8", rounding="kahan", lr=0.5)),
        ("q1.15 master q1.23", dict(format="q1.15", master="q1.23")),
        ("q4.12 lr 0.2 floor", dict(format="q4.12", lr=0.2, rounding="floor")),
    ]
    return out + others


def normalise(fields):
    """TrainConfig's normal form for a policy SPEC (train_settings: format, master and the
    canonical spec), so that TrainConfig accepts it."""
    if "policy" not in fields:
        return fields
    from qgpt.policy import train_settings

    fmt, rounding, master, spec, _ = train_settings(
        None, fields["policy"], fields.get("master"), fields.get("rounding"),
        fields.get("lr", 0.01))
    return {**fields, "format": fmt, "rounding": rounding, "master": master, "policy": spec}


def run_hash(path, fields, loss_batch):
    cfg = TrainConfig(data=path, steps=1000, seed=42, checkpoint_every=0, **normalise(fields))
    model = make_model(cfg)
    h = hashlib.sha256()
    for step, loss, tele in training_steps(model, data.load(cfg.data), cfg, stop=STEPS,
                                           loss_batch=loss_batch):
        h.update(repr((step, np.float64(loss).tobytes().hex(), sorted(tele.items()))).encode())
    meta, arrays = model.state()
    h.update(repr(sorted(meta.items())).encode())
    for name in sorted(arrays):
        h.update(name.encode())
        h.update(np.ascontiguousarray(arrays[name], dtype=np.int64).tobytes())
    h.update(json.dumps(model.summary_extra(), sort_keys=True).encode())
    return h.hexdigest()[:16]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data/names-makemore.txt")
    ap.add_argument("--out", help="write the hashes here (JSON)")
    ap.add_argument("--compare", help="a JSON of hashes to compare with")
    ap.add_argument("--only", help="run the configurations whose name contains this")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    hashes = {}
    for name, fields in configs():
        if args.only and args.only not in name:
            continue
        for batch in BATCHES:
            hashes[f"{name} / batch {batch}"] = run_hash(args.data, fields, batch)
    print(f"{len(hashes)} hashes of {len(hashes) // len(BATCHES)} configurations "
          f"in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(hashes, f, indent=1)
    if args.compare:
        with open(args.compare) as f:
            want = json.load(f)
        differ = [k for k in hashes if want.get(k) != hashes[k]]
        missing = [k for k in want if k not in hashes]
        for k in differ:
            print(f"DIFFERS {k}: {want.get(k)} -> {hashes[k]}")
        print(f"{len(hashes) - len(differ)} of {len(hashes)} equal"
              + (f", {len(missing)} not run" if missing else ""))
        return 1 if differ else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
