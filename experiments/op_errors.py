"""Per-op error of the integer simulator against the float reference.

For every op, forward and backward, the integer op runs on the float op's
inputs quantized to the policy's formats, and its dequantized outputs are
compared with the float op on the same (dequantized) inputs. So each row is the
op's own error, not an accumulation through the network. The inputs are the real
activations and gradients of a float model trained for 1000 steps, on validation
names.

    python experiments/op_errors.py [--formats q8.8,q4.12] [--data PATH] [--names 200]

writes experiments/results/op_errors.{md,csv,json} (with the command and config)
and prints the table. The bound column is the one docs/arithmetic.md states.
"""

import argparse
import csv
import io
import json
import sys
from pathlib import Path

import numpy as np
from tabulate import tabulate

from qgpt import checkpoint, data, float_model, prng
from qgpt import float_ops as F
from qgpt import int_ops as I
from qgpt.params import VOCAB, views
from qgpt.policy import PROB_FRAC, make_policy
from qgpt.qformat import parse, quantize, to_float
from qgpt.train import FloatModel, TrainConfig

OUT = Path(__file__).resolve().parent / "results"
# makemore's names, beside the project on the development machines (never copied into it)
MAKEMORE = Path(__file__).resolve().parents[2] / "shared" / "data" / "names-makemore.txt"


def default_data():
    """makemore's names when ../shared is beside the project, else the built-in names."""
    return str(MAKEMORE) if MAKEMORE.exists() else str(data.DEFAULT_DATA)

# The bounds docs/arithmetic.md (section 11) states for each op's own error, in steps (LSB)
# of the op's output format, or as an absolute error where the output is a probability.
# They are stated for data formats with F >= 8 and I >= 3: with fewer fractional bits the
# rounding of the op's inputs (scores, the rsqrt mantissa's use) dominates, and with
# fewer integer bits rmsnorm's outputs (up to 4) saturate.
BOUNDS_LSB = {
    "embedding_forward": 0, "relu_forward": 0, "relu_backward": 0,  # exact
    "linear_forward": 0.5, "linear_backward": 0.5,  # one rounding of an exact sum
    "rmsnorm_forward": 2.5, "rmsnorm_backward": 16, "attention_forward": 2,
    "attention_backward": 8, "cross_entropy_backward": 2,
}
BOUNDS_ABS = {("attention_forward", "probs"): 2e-3, ("cross_entropy_forward", "probs"): 2e-4,
              ("cross_entropy_forward", "loss_q16"): 1e-4}


def bound(op, tensor, lsb):
    """The stated bound as an absolute error."""
    if (op, tensor) in BOUNDS_ABS:
        return BOUNDS_ABS[(op, tensor)]
    return BOUNDS_LSB[op] * lsb


def trained_float(data_path, steps=1000, seed=42):
    ds = data.load(data_path)
    model = FloatModel(TrainConfig(data=data_path, steps=steps, seed=seed))
    for step in range(steps):
        name = ds.train[prng.doc_index(step, len(ds.train), seed)]
        model.train_step(data.encode(name), step, steps)
    return model.flat, ds


class Errors:
    """Max and mean absolute error per (op, tensor), over all calls."""

    def __init__(self):
        self.rows = {}

    def add(self, op, tensor, got, want, lsb):
        got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
        err = np.abs(got - want).ravel()
        r = self.rows.setdefault((op, tensor), {"max": 0.0, "sum": 0.0, "n": 0, "lsb": lsb})
        r["max"] = max(r["max"], float(err.max()) if err.size else 0.0)
        r["sum"] += float(err.sum())
        r["n"] += err.size


def measure(flat, names, fmt):
    pol = make_policy(fmt)
    ctx = I.Ctx(pol)
    D, G, L = pol.data, pol.grad, pol.logits
    f, g = D.frac_bits, G.frac_bits
    P = pol.pgrad_frac

    def q(x, fm=D):  # float -> raw
        return quantize(x, fm)

    def deq(raw, frac=f):
        return to_float(raw, frac)

    w = views(flat)
    wq = {k: q(v) for k, v in w.items()}
    wd = {k: deq(v) for k, v in wq.items()}
    errs = Errors()
    lsb_d, lsb_g, lsb_p = 2.0**-f, 2.0**-g, 2.0**-P
    for name in names:
        inputs, targets = float_model.split_tokens(data.encode(name))
        _, _, c = float_model.forward(flat, inputs, targets)
        dflat = np.zeros_like(flat)
        float_model.backward(flat, c, dflat)
        t = len(inputs)
        rng = np.random.default_rng(len(name))

        # embedding
        want = F.embedding_forward(wd["wte"], wd["wpe"], inputs)
        got = I.embedding_forward(ctx, wq["wte"], wq["wpe"], inputs)
        errs.add("embedding_forward", "x", deq(got), want, lsb_d)

        # rmsnorm on each of its real inputs (x0 input is the embedding sum)
        for x in (want, c["x0"], c["x2"] if "x2" in c else c["x3"]):
            xq = q(x)
            y_f, rstd = F.rmsnorm_forward(deq(xq))
            y_i, rs = I.rmsnorm_forward(ctx, xq)
            errs.add("rmsnorm_forward", "y", deq(y_i), y_f, lsb_d)
            dy = q(rng.normal(0, 0.05, x.shape), G)
            dx_f = F.rmsnorm_backward(deq(dy, g), deq(y_i), rstd)
            dx_i = I.rmsnorm_backward(ctx, dy, y_i, rs)
            errs.add("rmsnorm_backward", "dx", deq(dx_i, g), dx_f, lsb_g)

        # linear layers, forward and backward, with their real inputs
        for wname, x, out in (("layer0.attn_wq", c["x1"], D), ("layer0.attn_wo", c["att"], D),
                              ("layer0.mlp_fc1", c["x3"], D), ("layer0.mlp_fc2", c["hr"], D),
                              ("lm_head", c["x4"], L)):
            xq = q(x)
            y_f = F.linear_forward(deq(xq), wd[wname])
            y_i = I.linear_forward(ctx, xq, wq[wname], out, wname)
            errs.add("linear_forward", wname, deq(y_i), y_f, 2.0**-out.frac_bits)
            dy = q(rng.normal(0, 0.05, y_f.shape), G)
            dw_f = np.zeros_like(wd[wname])
            dx_f = F.linear_backward(deq(dy, g), deq(xq), wd[wname], dw_f)
            dw_i = np.zeros_like(wq[wname])
            dx_i = I.linear_backward(ctx, dy, xq, wq[wname], dw_i, wname)
            errs.add("linear_backward", wname + ".dx", deq(dx_i, g), dx_f, lsb_g)
            errs.add("linear_backward", wname + ".dw", deq(dw_i, P), dw_f, lsb_p)

        # attention
        qq, kq, vq = q(c["q"]), q(c["k"]), q(c["v"])
        out_f, probs_f = F.attention_forward(deq(qq), deq(kq), deq(vq))
        out_i, probs_i = I.attention_forward(ctx, qq, kq, vq)
        errs.add("attention_forward", "out", deq(out_i), out_f, lsb_d)
        errs.add("attention_forward", "probs", deq(probs_i, PROB_FRAC), probs_f, 2.0**-PROB_FRAC)
        dout = q(rng.normal(0, 0.05, out_f.shape), G)
        dq_f, dk_f, dv_f = F.attention_backward(deq(dout, g), deq(qq), deq(kq), deq(vq), probs_f)
        dq_i, dk_i, dv_i = I.attention_backward(ctx, dout, qq, kq, vq, probs_i)
        for tn, a, b in (("dq", dq_i, dq_f), ("dk", dk_i, dk_f), ("dv", dv_i, dv_f)):
            errs.add("attention_backward", tn, deq(a, g), b, lsb_g)

        # relu
        hq = q(c["h"])
        errs.add("relu_forward", "y", deq(I.relu_forward(hq)), F.relu_forward(deq(hq)), lsb_d)
        dy = q(rng.normal(0, 0.05, hq.shape), G)
        errs.add("relu_backward", "dx", deq(I.relu_backward(dy, hq), g),
                 F.relu_backward(deq(dy, g), deq(hq)), lsb_g)

        # cross-entropy on the real logits
        lq = q(F.linear_forward(c["x4"], w["lm_head"]), L)
        loss_f, p_f = F.cross_entropy_forward(deq(lq), targets)
        p_i = I.cross_entropy_forward(ctx, lq, targets)
        errs.add("cross_entropy_forward", "probs", deq(p_i, PROB_FRAC), p_f, 2.0**-PROB_FRAC)
        errs.add("cross_entropy_forward", "loss_q16", [I.loss_q16(lq, targets, f) / 65536],
                 [loss_f], 2.0**-16)
        errs.add("cross_entropy_backward", "dlogits", deq(I.cross_entropy_backward(ctx, p_i,
                 targets), g), F.cross_entropy_backward(p_f, targets), lsb_g)
        assert lq.shape[1] == VOCAB and t == len(targets)
    return errs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--formats", default="q8.8,q4.12")
    ap.add_argument("--data", default=None, help="default: makemore's names if present")
    ap.add_argument("--names", type=int, default=200, help="validation names to measure on")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    data_path = args.data or default_data()
    flat, ds = trained_float(data_path)
    names = ds.val[: args.names]
    rows = []
    for fmt in args.formats.split(","):
        errs = measure(flat, names, fmt)
        for (op, tensor), r in errs.rows.items():
            qf = parse(fmt)
            b = bound(op, tensor, r["lsb"]) if qf.frac_bits >= 8 and qf.int_bits >= 3 else None
            rows.append({"format": fmt, "op": op, "tensor": tensor, "max_abs": r["max"],
                         "mean_abs": r["sum"] / max(r["n"], 1), "max_lsb": r["max"] / r["lsb"],
                         "bound": "" if b is None else b,
                         "within": "n/a" if b is None else "yes" if r["max"] <= b else "NO",
                         "values": r["n"]})
    headers = ["format", "op", "tensor", "max_abs", "mean_abs", "max_lsb", "bound", "within",
               "values"]
    table = tabulate([[r[h] for h in headers] for r in rows], headers=headers, tablefmt="github",
                     floatfmt=".3g")
    command = "python experiments/op_errors.py " + " ".join(argv if argv is not None
                                                           else sys.argv[1:])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    md = (f"# Integer op error against the float reference\n\nCommand: `{command.strip()}`\n\n"
          f"Data: `{Path(data_path).name}`, a float model trained 1000 steps (seed 42), "
          f"{len(names)} validation names. `max_lsb` is the max error in steps (LSB) of the "
          "op's output format; `bound` is the bound docs/arithmetic.md states (for F >= 8 "
          "and I >= 3), as an absolute error.\n\n" + table + "\n")
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=headers, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    checkpoint.write_atomic(out / "op_errors.md", md.encode())
    checkpoint.write_atomic(out / "op_errors.csv", buf.getvalue().encode())
    cfg = {"command": command.strip(), "data": Path(data_path).name, "names": len(names),
           "formats": args.formats.split(","), "float_steps": 1000, "seed": 42}
    checkpoint.write_atomic(out / "op_errors.json", json.dumps(cfg, indent=2).encode())
    print(table)
    return 0 if all(r["within"] != "NO" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
