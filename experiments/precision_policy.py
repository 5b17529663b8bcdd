"""Which tensor class needs how many bits: precision policies trained and compared with float.

    python experiments/precision_policy.py [--tables classes,low,int8] [--jobs 2] [--seeds 3]

Tables (docs/RESULTS.md, "Precision policies" and "8-bit training"):
    classes  the bits of each class in turn, every other class at its int16 default
             (`--policy int16`), weight updates rounded stochastically (and nearest for
             the weights' rows)
    low      all-low-bit policies
    int8     bits of the weights and of Adam's state x update technique (issue 13)

Every run: makemore's names (../shared/data/names-makemore.txt), 1000 steps, seeds 42,
43, 44, and the float64 reference with the same seeds. Written to
experiments/results/policy/TABLE/: results.md (the table), runs.csv (one row per run)
and results.json (the command, the dataset's sha256, every run's resolved policy and
telemetry). Saturations are summed per class (tensor names mapped by CLASS_OF below).
About 4 minutes on 2 cores.
"""

import argparse
import csv
import hashlib
import json
import os
import sys
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from qgpt import data, policy
from qgpt.train import TrainConfig, make_model, nll, training_steps

ROOT = Path(__file__).resolve().parent.parent
DATA = "../shared/data/names-makemore.txt"
OUT = Path("experiments/results/policy")
STEPS = 1000

CLASS_ROWS = {  # class -> formats of 12, 8 and 6 (state: 16, 12, 8) bits; int16 is the top
    "weights": ("q2.10", "q2.6", "q2.4"),
    "acts": ("q4.8", "q4.4", "q4.2"),
    "logits": ("q6.6", "q5.3", "q4.2"),
    "grads": ("q2.10", "q2.6", "q2.4"),
    "pgrads": ("q2.14", "q2.10", "q2.6"),
    "adam_m": ("q2.14", "q2.10", "q2.6"),
    "adam_v": ("q2.14", "q2.10", "q2.6"),
}
LOW_POLICIES = (
    "weights=q2.6,acts=q4.4",
    "weights=q2.6,acts=q4.4,logits=q5.3,grads=q2.6",
    "weights=q2.6,acts=q4.4,pgrads=q2.14,adam_m=q2.14,adam_v=q2.14",
    "weights=q2.4,acts=q4.2",
)

STATE = {"int32": "", "16-bit": ",adam_m=q2.14,adam_v=q2.14",
         "b16x64": ",adam_m=b16x64,adam_v=b16x64", "b8x64": ",adam_m=b8x64,adam_v=b8x64",
         "b8x256": ",adam_m=b8x256,adam_v=b8x256"}
INT8_ROWS = (  # (weights, state, rounding) of the int8 table; acts as the weights' width
    *((w, st, "nearest") for w in ("q4.12",) for st in STATE),
    *(("q2.6", st, r) for st in ("int32", "b8x64")
      for r in ("nearest", "stochastic", "pseudo", "kahan")),
    ("q2.6", "b8x256", "kahan"),
)
INT8_PRESETS = ("int8", "int8,pgrads=q14.18", "int8,pgrads=q2.10")

# tensor names of the simulator's saturation counters (int_ops, int_model) -> class
CLASS_OF = {
    "embedding.x": "acts", "rmsnorm.y": "acts", "qkv": "acts", "attention.out": "acts",
    "attn_proj": "acts", "residual1": "acts", "mlp_hidden": "acts", "mlp_out": "acts",
    "residual2": "acts", "logits": "logits", "attention.scores": "logits",
    "adam.m": "adam_m", "adam.gm": "adam_m", "adam.v": "adam_v", "adam.gs": "adam_v",
    "weights": "weights", "embedding.dw": "pgrads",
}


def class_of(tensor):
    if tensor in CLASS_OF:
        return CLASS_OF[tensor]
    return "pgrads" if tensor.endswith(".dw") else "grads"


def jobs_of(tables, seeds):
    """(table, label, spec, rounding, seed) of every run; spec 'float' for the reference."""
    runs = [("float", "float64", "float", None, s) for s in seeds]
    for table in tables:
        if table == "classes":
            runs += [("classes", "int16", "int16", mode, s) for mode in ("stochastic", "nearest")
                     for s in seeds]
            for cls, fmts in CLASS_ROWS.items():
                for fmt in fmts:
                    modes = ("stochastic", "nearest") if cls == "weights" else ("stochastic",)
                    for mode in modes:
                        runs += [("classes", f"{cls}={fmt}", f"int16,{cls}={fmt}", mode, s)
                                 for s in seeds]
        elif table == "int8":
            for w, st, mode in INT8_ROWS:
                acts = "q4.12" if w == "q4.12" else "q4.4"
                spec = f"weights={w},acts={acts}{STATE[st]}"
                runs += [("int8", f"weights {w}, acts {acts}, state {st}", spec, mode, s)
                         for s in seeds]
            for spec in INT8_PRESETS:
                runs += [("int8", spec, spec, None, s) for s in seeds]
        elif table == "low":
            for spec in LOW_POLICIES:
                for mode in ("stochastic", "nearest"):
                    runs += [("low", spec, spec, mode, s) for s in seeds]
    return runs


def run_one(job):
    table, label, spec, rounding, seed = job
    if spec == "float":
        cfg = TrainConfig(data=DATA, steps=STEPS, seed=seed)
    else:
        fmt, mode, master, pol, _ = policy.train_settings(None, spec, None, rounding, 0.01)
        cfg = TrainConfig(data=DATA, steps=STEPS, seed=seed, format=fmt, rounding=mode,
                          master=master, policy=pol)
    ds = data.load(DATA)
    model = make_model(cfg)
    losses = [loss for _, loss, _ in training_steps(model, ds, cfg)]
    row = {"table": table, "label": label, "spec": spec, "rounding": rounding or "",
           "seed": seed, "val_nll": nll(model, ds.val),
           "train_loss_last100": float(np.mean(losses[-100:]))}
    if spec != "float":
        extra = model.summary_extra()
        by_class = {}
        for tensor, n in extra["saturations"].items():
            by_class[class_of(tensor)] = by_class.get(class_of(tensor), 0) + n
        row.update(policy=extra["policy"]["spec"], state_bytes=model.policy.state_bytes(),
                   stalled=extra["stalled_update_rate"],
                   saturations_per_step={c: n / STEPS for c, n in sorted(by_class.items())})
    return row


def summarize(rows):
    """(table, label, rounding) -> mean val_nll minus float's (same seeds), spread, telemetry."""
    ref = {r["seed"]: r["val_nll"] for r in rows if r["spec"] == "float"}
    groups = {}
    for r in rows:
        if r["spec"] != "float":
            groups.setdefault((r["table"], r["label"], r["rounding"]), []).append(r)
    out = []
    for (table, label, rounding), rs in groups.items():
        gaps = [r["val_nll"] - ref[r["seed"]] for r in rs]
        sat = {}
        for r in rs:
            for c, n in r["saturations_per_step"].items():
                sat[c] = sat.get(c, 0) + n / len(rs)
        out.append({"table": table, "label": label, "rounding": rounding,
                    "val_nll": float(np.mean([r["val_nll"] for r in rs])),
                    "gap": float(np.mean(gaps)), "gap_min": min(gaps), "gap_max": max(gaps),
                    "stalled": float(np.mean([r["stalled"] for r in rs])),
                    "state_bytes": rs[0]["state_bytes"], "saturations_per_step": sat,
                    "policy": rs[0]["policy"], "seeds": len(rs)})
    return out


def markdown(summary, rows, command):
    ref = [r["val_nll"] for r in rows if r["spec"] == "float"]
    lines = [f"# Precision policies (`{command}`)", "",
             f"float64 reference: val_nll {np.mean(ref):.4f} (seeds "
             f"{', '.join(f'{v:.4f}' for v in ref)}). gap = mean val_nll minus float's over "
             "the same seeds (min..max over seeds); stalled = share of weight updates that "
             "rounded to zero; saturations per step by class; state bytes = device bytes of "
             "weights, master, gradient, Adam m and v (docs/arithmetic.md, 3.3).", ""]
    for table, title in (("classes", "One class at a time (the others at int16)"),
                         ("low", "All-low-bit policies"),
                         ("int8", "8-bit training: weights and Adam state x technique")):
        sel = [s for s in summary if s["table"] == table]
        if not sel:
            continue
        lines += [f"## {title}", "",
                  "| policy | rounding | val_nll | gap | min..max | stalled | saturations/step "
                  "| state bytes |", "|---|---|---|---|---|---|---|---|"]
        for s in sel:
            sat = ", ".join(f"{c} {n:.3g}" for c, n in s["saturations_per_step"].items() if n)
            lines.append(f"| `{s['label']}` | {s['rounding']} | {s['val_nll']:.4f} | "
                         f"{s['gap']:+.4f} | {s['gap_min']:+.4f}..{s['gap_max']:+.4f} | "
                         f"{s['stalled']:.1%} | {sat or '-'} | {s['state_bytes']:,} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def write(out, table, rows):
    """One table's folder: results.md, runs.csv, results.json (with the float rows)."""
    rows = [r for r in rows if r["table"] in ("float", table)]
    command = f"python experiments/precision_policy.py --tables {table}"
    summary = summarize(rows)
    for s_ in summary:  # the preset rows' rounding, as resolved
        s_["rounding"] = s_["rounding"] or policy.parse_policy(s_["label"]).rounding
    out = Path(out) / table
    out.mkdir(parents=True, exist_ok=True)
    sha = hashlib.sha256(Path(DATA).read_bytes()).hexdigest()
    (out / "results.json").write_text(json.dumps(
        {"command": command, "data": DATA, "data_sha256": sha, "steps": STEPS,
         "summary": summary, "runs": rows}, indent=1) + "\n")
    with open(out / "runs.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["table", "label", "rounding", "seed", "val_nll", "train_loss_last100",
                    "stalled", "state_bytes", "policy"])
        for r in rows:
            w.writerow([r["table"], r["label"], r["rounding"], r["seed"], f"{r['val_nll']:.6f}",
                        f"{r['train_loss_last100']:.6f}", r.get("stalled", ""),
                        r.get("state_bytes", ""), r.get("policy", "")])
    (out / "results.md").write_text(markdown(summary, rows, command))
    print((out / "results.md").read_text())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", default="classes,low,int8")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=3, help="seeds 42, 43, ... (default 3)")
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--from-json", default=None, metavar="FILE",
                        help="rebuild the tables from the runs of a results.json, no training")
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    if not Path(DATA).exists():
        print(f"skipped: {DATA} is absent (makemore's names)")
        return 0
    tables = [t.strip() for t in args.tables.split(",") if t.strip()]
    if args.from_json:
        rows = json.loads(Path(args.from_json).read_text())["runs"]
    else:
        jobs = jobs_of(tables, list(range(42, 42 + args.seeds)))
        for _, _, spec, rounding, _ in jobs:  # a bad policy fails here, before any work
            if spec != "float":
                policy.train_settings(None, spec, None, rounding, 0.01)
        # every finished run is kept in a cache beside the results (one JSON line each),
        # so an interrupted sweep continues where it stopped
        cache = Path(args.out) / f"cache-{'-'.join(tables)}.jsonl"
        cache.parent.mkdir(parents=True, exist_ok=True)
        done = {}
        if cache.exists():
            for line in cache.read_text().splitlines():
                r = json.loads(line)
                done[(r["table"], r["label"], r["rounding"], r["seed"])] = r
        todo = [j for j in jobs if (j[0], j[1], j[3] or "", j[4]) not in done]
        with Pool(args.jobs) as pool, open(cache, "a") as f:
            for r in pool.imap_unordered(run_one, todo):
                f.write(json.dumps(r) + "\n")
                f.flush()
                done[(r["table"], r["label"], r["rounding"], r["seed"])] = r
        rows = [done[(j[0], j[1], j[3] or "", j[4])] for j in jobs]
    for table in tables:
        write(args.out, table, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
