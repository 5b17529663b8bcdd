"""Instructions per parameter of adam_update on a real run's state (issue 15, point 3).

    python experiments/fwperf/adamiso.py [--source DIR] [--step 100] [--policy SPEC]

The simulator trains the policy (default: q4.12's, the one `python -m qgpt.fwprofile`
measures) on the built-in names up to --step; every 4th parameter's weight, m, v and
gradient of that step (before its update: 1,048 parameters) go into a driver that
restores them and calls kernels.adam_update once on all of them, REPS times, on the
MicroPython unix port under cachegrind, with the step's alpha and the policy's shifts
as firmware/policy.py computes them. The restore alone (unit `restore`) is subtracted.
Unlike kiso.py's adam_256 (synthetic m, v and g, other shifts), the values have the
run's distribution: which of adam_update's paths they take is what a step sees.
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from qgpt import fwprofile as fp  # noqa: E402

STRIDE = 4  # every 4th parameter

DRIVER = '''import sys
from array import array
import kernels as K
S0 = array("STORE_CODE", STORE)
M0 = array("i", M)
V0 = array("i", V)
G = array("i", GRAD)
N = len(G)
s, m, v = array("STORE_CODE", S0), array("i", M0), array("i", V0)
comp = bytearray(N)
reps, unit = int(sys.argv[1]), sys.argv[2]
for _ in range(reps):
    K.copy32(0, 0, s, 0, S0, 0, N * STORE_BYTES // 4)
    K.copy32(0, 0, m, 0, M0, 0, N)
    K.copy32(0, 0, v, 0, V0, 0, N)
    if unit == "adam":
        K.adam_update(0, 0, s, m, v, G, comp, N, 0, 0, 0, ALPHA, ARGS)
print("done step")
'''


def run_state(spec, step, num_steps=1000):
    """(policy, store, m, v, g, alpha) at `step` of a q4.12 run of policy `spec`, every
    STRIDE-th parameter, before the step's update."""
    from qgpt import data, train
    from qgpt.int_model import IntAdam, alpha_at, beta_powers
    from qgpt.runconfig import TrainConfig

    cfg = TrainConfig(format="q4.12", steps=num_steps, policy=spec)
    model = train.make_model(cfg)
    got = {}
    orig = IntAdam.step

    def step_hook(self, store, g, s, n, ctx):
        if s == step:
            p1, p2 = beta_powers(self.p1, self.p2)
            got["state"] = (store.copy(), self.m.copy(), self.v.copy(), g.copy(),
                            alpha_at(self.p, s, n, p1, p2))
        return orig(self, store, g, s, n, ctx)

    IntAdam.step = step_hook
    try:
        for _ in train.training_steps(model, data.load(cfg.data), cfg, 0, step + 1):
            pass
    finally:
        IntAdam.step = orig
    store, m, v, g, alpha = got["state"]
    pick = slice(0, None, STRIDE)
    return model.policy, store[pick], m[pick], v[pick], g[pick], alpha


def kernel_args(p):
    """adam_update's arguments after alpha (sh_m .. bv) for plain m and v of policy p,
    as firmware/policy.py gives them (docs/arithmetic.md 9)."""
    modes = ("nearest", "floor", "stochastic", "pseudo", "kahan")
    fh = p.sqrt_frac
    S = p.weight_store
    bs = 2 if S.bits > 8 else 1
    if S.bits > 16:
        bs = 4
    return (p.pgrads.frac_bits - p.m_wide.frac_bits, p.pgrads.frac_bits - fh, p.adam_e,
            p.update_shift, modes.index(p.rounding), 0, S.lo, S.hi, p.m_limit, p.v_wide.hi,
            bs, 4)


def measure(source=None, step=100, spec="", reps=(4, 24)):
    """(instructions per parameter, parameters, path counts)."""
    from qgpt import conformance as cf

    p, store, m, v, g, alpha = run_state(spec, step)
    args = kernel_args(p)
    bs = args[-2]
    code = {1: "b", 2: "h", 4: "i"}[bs]
    n = len(g) - len(g) % 4
    text = (DRIVER.replace("STORE_CODE", code).replace("STORE_BYTES", str(bs))
            .replace("STORE", str(store[:n].tolist())).replace("GRAD", str(g[:n].tolist()))
            .replace("M0 = array(\"i\", M)", f"M0 = array(\"i\", {m[:n].tolist()})")
            .replace("V0 = array(\"i\", V)", f"V0 = array(\"i\", {v[:n].tolist()})")
            .replace("ALPHA", str(alpha)).replace("ARGS", ", ".join(map(str, args))))
    kernels = Path(source or cf.FIRMWARE_DIR) / "kernels.py"
    out = {}
    with tempfile.TemporaryDirectory(prefix="qgpt-adamiso-") as tmp:
        tmp = Path(tmp)
        (tmp / "kernels.py").write_text(kernels.read_text())
        subprocess.run([cf.default_mpy_cross(), "-march=host", "kernels.py"], cwd=tmp, check=True)
        (tmp / "kernels.py").unlink()
        (tmp / "drive.py").write_text(text)
        for unit in ("restore", "adam"):
            counts = []
            for r in reps:
                cmd = [fp.default_micropython(), "-X", "heapsize=400K", "drive.py", str(r), unit]
                count, _ = fp.run_counted(cmd, tmp, None, tmp / f"cg-{unit}-{r}.out")
                counts.append(count.total)
            out[unit] = (counts[1] - counts[0]) / (reps[1] - reps[0])
    per = (out["adam"] - out["restore"]) / n
    am, ag = np.abs(m[:n]), np.abs(g[:n])
    return per, n, {"g == 0": int(np.sum(g[:n] == 0)),
                    "|m|, |g| < 2**18": int(np.sum((am < 2**18) & (ag < 2**18))),
                    "v < 2**22": int(np.sum(v[:n] < 2**22)), "v == 0": int(np.sum(v[:n] == 0))}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", help="a copy of firmware/ (default: firmware/ itself)")
    ap.add_argument("--step", type=int, default=100)
    ap.add_argument("--policy", default="", help="a policy SPEC (default: q4.12's)")
    a = ap.parse_args(argv)
    per, n, paths = measure(a.source, a.step, a.policy)
    print(f"adam_update: {per:.1f} instructions per parameter ({n} parameters of step "
          f"{a.step}, policy {a.policy or 'q4.12 default'}); "
          + ", ".join(f"{k}: {v}" for k, v in paths.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
