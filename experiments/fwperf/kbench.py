"""Instructions per call of single firmware kernels, under cachegrind (issue 15's diagnosis).

    python experiments/fwperf/kbench.py [--source DIR] [--units linear_fwd_16x64,adam_256]

A real run (firmware/qgpt_train.py on the built-in names, q4.12) trains 19 steps; after
step 20 (T = 7 positions) a driver calls one kernel REPS times on the model's own
buffers, so the inputs are realistic. Two values of REPS, the difference of the
instruction counts over the difference of REPS: the instructions of one call, less the
call loop's own (the unit `loop`, subtracted). The kernels' argument lists are those
of the precision policy's firmware with the linear kernels' `wmax` (issue 15's speed
work); commit 4a77c9b's, which the prototypes experiments/fwperf/*.patch change, are in
this file's history (git log experiments/fwperf/kbench.py).
"""

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from qgpt import fwprofile as fp  # noqa: E402

# unit -> (the call, multiply-accumulates or elements of one call at T = 7, what)
UNITS = {
    "loop": ("None", 0, ""),
    "linear_fwd_16x64": (
        "K.linear_forward(h, x3, fc1, t, 16, 64, sh, lo, hi, ba, ba, bw, wm1)", 1024, "MAC"),
    "linear_fwd_64x16": (
        "K.linear_forward(gc, h, fc2, t, 64, 16, sh, lo, hi, ba, ba, bw, wm2)", 1024, "MAC"),
    "linear_bwd_dx_16x64": (
        "K.linear_backward(gb, logits, dh, x3, fc1, T, 16, 64, shb, sh_w, 0, 0, 1, gl, gh, pl, "
        "ph, bg, ba, bw, wm1)", 7 * 1024, "MAC"),
    "linear_bwd_dw_16x64": (
        "K.linear_backward(gb, logits, dh, x3, fc1, T, 16, 64, shb, sh_w, 0, 27, 0, gl, gh, pl, "
        "ph, bg, ba, bw, wm1)", 27 * 16 * 7, "MAC"),
    "attention_fwd": (
        "K.attention_forward(at, probs, srow, q, k, vv, t, T, 4, 4, sh_s, lo_l, hi_l, F, sh_o, "
        "lo, hi, ba)", 4 * 7 * 8, "MAC"),
    "attention_bwd": (
        "K.attention_backward(gc, at, x4, gb, q, k, vv, probs, logits, T, 4, 4, sh_dp, sh_p, "
        "sh_qk, gl, gh, bg, ba)", 4 * 28 * 17, "MAC"),
    "rmsnorm_fwd": ("K.rmsnorm_forward(x1, rs1, x0, t, 16, g, fm, eps, lo, hi, ba)", 16,
                    "element"),
    "rmsnorm_bwd": ("K.rmsnorm_backward(gc, gb, x1, rs1, T, 16, sh_c, fa, gl, gh, bg, ba)",
                    7 * 16, "element"),
    "adam_256": (
        "K.adam_update(0, 0, mdl.store, mdl.m, mdl.v, probs, mdl.blk[9], 256, 0, 0, 0, alpha, "
        "sh_m, sh_sa, e, u, mode, 0, slo, shi, hm, hv, bs, bm, bv)", 256, "parameter"),
    "softmax_27": ("K.softmax(logits, logits, 0, 27, F)", 27, "element"),
    "embedding_fwd": ("K.embedding_forward(ga, wte, wpe, 3, t, 16, sh_emb, lo, hi, ba, bw)", 16,
                      "element"),
    "forward_position": ("mdl.forward_position(t, T)", 1, "position"),
}

DRIVER = '''import sys
import qgpt_train

UNIT, REPS = sys.argv[1], int(sys.argv[2])


def bench(mdl, T, step, num_steps):
    import kernels as K
    import model as MD
    F, lo, hi, sh, shl, g, fm, eps, sh_s, lo_l, hi_l, sh_o, sh_emb = mdl.fwd
    sh_c, sh_dp, sh_p, sh_qk, sh_e, shb, sh_w, gl, gh, pl, ph, sh_ce, fa = mdl.bwd
    sh_m, sh_sa, e, u, mode, slo, shi, hm, hv, _, _, _ = mdl.opt
    bw, ba, bg, bm, bv, bs = mdl.nb
    probs, logits, h, dh, x0, x1, q, k, vv, at, x3, x4, ga, gb, gc, rs0, rs1, rs3, srow = mdl.act
    wte, wpe, lm_head, wq, wk, wv, wo, fc1, fc2 = mdl.w
    lr_q30, alpha_frac, stochastic = mdl.schedule
    alpha = MD.alpha_at(lr_q30, alpha_frac, step, num_steps, mdl.p1, mdl.p2)
    t = T - 1
    print("kbench T", T)
    wm1 = K.abs_max(fc1, 1024, bw)
    wm2 = K.abs_max(fc2, 1024, bw)
    f = lambda: CALL
    for _ in range(REPS):
        f()


_begin = qgpt_train.begin


def _patched_begin(cfg, mdl, numbers):
    model = sys.modules["model"]
    orig = model.Model.train_step

    def train_step(self, T, step, num_steps):
        loss = orig(self, T, step, num_steps)
        if step == 19:
            bench(self, T, step, num_steps)
        return loss

    model.Model.train_step = train_step
    return _begin(cfg, mdl, numbers)


qgpt_train.begin = _patched_begin
sys.exit(qgpt_train.main(sys.argv[3]))
'''


def measure(units, source=None, reps=(10, 60)):
    """{unit: instructions per call, the call loop's own cost subtracted}."""
    from qgpt import conformance as cf

    out = {}
    with tempfile.TemporaryDirectory(prefix="qgpt-kbench-") as tmp:
        tmp = Path(tmp)
        fw = fp.build_firmware(tmp / "fw", source)
        run = tmp / "run"
        run.mkdir()
        cf.pack_names(None, run / "names.bin")
        config = fp.run_config(fp.train_case("q4.12"), "names.bin", 20)
        (run / "c.json").write_text(json.dumps(config))
        env = dict(os.environ, MICROPYPATH=str(fw), PYTHONHASHSEED="0")
        for unit in ["loop", *units]:
            call = UNITS[unit][0]
            (fw / "kbench_driver.py").write_text(DRIVER.replace("CALL", call))
            counts = []
            for n in reps:
                cmd = [fp.default_micropython(), "-X", "heapsize=120K", "-m", "kbench_driver",
                       unit, str(n), "c.json"]
                count, stdout = fp.run_counted(cmd, run, env, run / f"cg-{unit}-{n}.out")
                if "kbench T 7\n" not in stdout:  # the work counts of UNITS assume T = 7
                    raise RuntimeError("step 20 of the built-in names is no longer 7 positions")
                counts.append(count.total)
            out[unit] = (counts[1] - counts[0]) / (reps[1] - reps[0])
    loop = out.pop("loop")
    return {u: v - loop for u, v in out.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", help="a copy of firmware/ (default: firmware/ itself)")
    ap.add_argument("--units", default=",".join(u for u in UNITS if u != "loop"))
    a = ap.parse_args(argv)
    units = [u for u in a.units.split(",") if u]
    bad = [u for u in units if u not in UNITS or u == "loop"]
    if bad:
        print(f"--units: unknown {', '.join(bad)}; choose from {', '.join(UNITS)}",
              file=sys.stderr)
        return 2
    from tabulate import tabulate

    res = measure(units, a.source)
    rows = [[u, round(res[u]), UNITS[u][1], UNITS[u][2], round(res[u] / UNITS[u][1], 1)]
            for u in units]
    print(tabulate(rows, headers=["kernel call", "instructions", "work", "unit", "per unit"],
                   tablefmt="github"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
