"""The precision policy (qgpt/policy.py, docs/arithmetic.md section 3).

1. --format runs are unchanged: losses and state hashes of 50-step runs pinned from the
   code before the policy existed.
2. Defaults, SPEC forms and the normal form of TrainConfig (section 3.2, 3.8).
3. The validity rule (3.4) against an oracle built from the shift table of 3.6, and
   valid policies trained under --strict on saturated weights: the rule is enough.
4. One-line errors naming the class and the reason, through the CLI.
5. No float in a training step (issue 9, 10a): numpy's float functions made to raise.
"""

import json
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qgpt import cli, data, policy
from qgpt import int_ops as ops
from qgpt.conformance import state_hash
from qgpt.int_model import IntAdam, backward, forward
from qgpt.params import N_PARAMS
from qgpt.policy import CLASSES, PolicyError, make_policy, parse_policy
from qgpt.qformat import QFormat
from qgpt.train import TrainConfig, make_model, training_steps

# --- 1. --format runs produce exactly the integers they did before the policy ---------

# (crc32 of the 50 per-step loss_q16 values as int64 LE, the last loss_q16, the state hash
# (params, adam_m, adam_v as the device's `done` line), stalled updates, saturations).
# Computed with pinned_run() below on the code of main at commit 8a04764 (before the
# policy existed): data/names.txt, seed 42, a 50-step run.
PINNED = {
    ("q4.12", "nearest", ""): (2119878512, 198978, 2257641302, 24524, 0),
    ("q4.12", "stochastic", ""): (895664409, 199321, 805493071, 23212, 0),
    ("q8.8", "nearest", ""): (3101309814, 198292, 3216864253, 133487, 0),
    ("q8.8", "stochastic", ""): (1000124408, 198591, 194831062, 121226, 0),
    ("q8.8", "floor", ""): (3480478022, 215209, 1890270008, 100755, 2),
    ("q4.12", "nearest", "q4.20"): (332037417, 199111, 345152003, 132, 0),
    ("q15.1", "stochastic", "q15.16"): (1074687384, 215706, 2647771487, 2, 0),
}


def pinned_run(cfg):
    ds = data.load(cfg.data)
    model = make_model(cfg)
    q16 = [int(tele["loss_q16"]) for _, _, tele in training_steps(model, ds, cfg)]
    _, arrays = model.state()
    return (zlib.crc32(np.asarray(q16, dtype="<i8").tobytes()), q16[-1],
            state_hash(arrays["params"], arrays["adam_m"], arrays["adam_v"]),
            model.stalled_total, sum(model.ctx.saturations.values()))


@pytest.mark.parametrize("key", PINNED, ids=lambda k: "-".join(x for x in k if x))
def test_format_runs_reproduce_the_pre_policy_integers(key):
    fmt, rounding, master = key
    got = pinned_run(TrainConfig(steps=50, seed=42, format=fmt, rounding=rounding,
                                 master=master))
    names = ("loss_q16 crc", "last loss_q16", "state hash", "stalled", "saturations")
    diff = [f"{n}: {g} vs pinned {w}" for n, g, w in zip(names, got, PINNED[key], strict=True)
            if g != w]
    assert not diff, f"{key}: " + "; ".join(diff)


@pytest.mark.parametrize("spec, fmt", [("int16", "q4.12"), ("weights=q8.8,acts=q8.8", "q8.8"),
                                       ("acts=Q8.8 , weights=q8.8", "q8.8")])
def test_a_spec_of_the_format_defaults_is_the_format_run(spec, fmt):
    """The same resolved policy gives the same TrainConfig and the same integers."""
    via_spec = policy.train_settings(None, spec, None, None, 0.01)
    via_format = policy.train_settings(fmt, "", None, None, 0.01)
    assert via_spec[:4] == via_format[:4] == (fmt, "nearest", "", "")
    cfg = TrainConfig(steps=50, seed=42, format=fmt)
    if fmt == "q4.12":
        assert pinned_run(cfg) == PINNED[(fmt, "nearest", "")]


# --- 2. defaults, SPEC forms, normal form ------------------------------------------


def test_the_contract_default_table():
    """section 3.1's two rows."""
    rows = {"q4.12": "q4.12 q4.12 q8.12 q2.14 q10.22 q10.22 q4.28 none",
            "q8.8": "q8.8 q8.8 q12.8 q2.14 q14.18 q14.18 q4.28 none"}
    for fmt, row in rows.items():
        p = make_policy(fmt)
        got = " ".join(f.name if f else "none" for f in p.classes().values())
        assert got == row, f"--format {fmt}: {got}, the contract says {row}"
        assert p.spec == ",".join(f"{c}={f}" for c, f in zip(CLASSES, row.split(), strict=True))
    assert make_policy("q4.12").state_bytes() == 4192 * (2 + 4 + 4 + 4) == 58688


def test_defaults_follow_the_resolved_classes():
    p = parse_policy("weights=q2.6,acts=q4.4")
    # logits from acts: q(4+4).4; pgrads: Fg + Fa - guard(16, 16, 8) = 14 + 4 - 0
    assert (p.logits, p.pgrads, p.adam_m, p.adam_v) == (
        QFormat(8, 4), QFormat(14, 18), QFormat(14, 18), QFormat(4, 28))
    # weights alone: acts keep the base (q4.12), not the weights' format
    assert parse_policy("weights=q2.6").acts == QFormat(4, 12)
    assert parse_policy("acts=q4.4", fmt="q8.8").weights == QFormat(8, 8)
    # a named pgrads does not move adam_m's default
    assert parse_policy("pgrads=q8.8").adam_m == QFormat(10, 22)
    # bytes: weights 1, pgrads 4, m 4, v 4
    assert p.state_bytes() == 4192 * 13


def test_spec_forms_agree(tmp_path):
    pairs = parse_policy("weights=q2.6,acts=q4.4,rounding=stochastic")
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"weights": "q2.6", "acts": "q4.4", "rounding": "stochastic"}))
    assert parse_policy(str(f)) == pairs
    f.write_text(json.dumps({"preset": "int16", "weights": "q2.6", "acts": "q4.4",
                             "rounding": "stochastic"}))
    assert parse_policy(str(f)) == pairs
    assert parse_policy("int16,weights=q2.6,acts=q4.4,rounding=stochastic") == pairs
    assert parse_policy(" WEIGHTS = Q2.6 ,acts=q4.4", rounding="stochastic") == pairs
    assert parse_policy(pairs.spec, rounding="stochastic") == pairs
    # --rounding overrides the SPEC's; --master equals master=
    assert parse_policy("weights=q2.6,rounding=stochastic", rounding="floor").rounding == "floor"
    assert parse_policy("", "q4.12", "q4.20") == parse_policy("master=q4.20")


def test_normal_form_is_unique_and_reloads():
    a = policy.train_settings(None, "weights=q2.6,acts=q4.4", None, "stochastic", 0.01)
    b = policy.train_settings("q4.4", "weights=q2.6", None, "stochastic", 0.01)
    assert a[:4] == b[:4]
    fmt, rounding, master, spec, label = a
    assert (fmt, master, label) == ("q2.6", "", "weights-q2.6_acts-q4.4")
    cfg = TrainConfig(format=fmt, rounding=rounding, master=master, policy=spec)
    assert policy.from_train_config(cfg) == parse_policy("weights=q2.6,acts=q4.4",
                                                         rounding="stochastic")
    # a checkpoint's config from before the policy (no policy key) still loads
    old = {k: v for k, v in cfg.__dict__.items() if k != "policy"}
    assert TrainConfig(**{**old, "format": "q4.12"}).policy == ""


def test_describe_has_the_contract_keys():
    d = parse_policy("weights=q2.6,acts=q4.4", rounding="stochastic").describe()
    for key in ("spec", *CLASSES, "ranges", "rounding", "softmax_probs", "lr_q30",
                "alpha_frac", "shifts", "state_bytes"):
        assert key in d, key
    assert d["ranges"]["weights"] == "q2.6: 8 bits, [-2, 1.98438], step 2^-6"
    assert d["shifts"]["score_shift"] == 2 * 4 + 1 - 4 and d["shifts"]["adam_e"] == 13 + 14 - 18


# --- 3. the validity rule ---------------------------------------------------------


def shift_oracle(c, lr_q30):
    """Valid iff every requantization of section 3.6 is possible: the three dot-product
    shifts that depend on the policy are >= 0, sqrt(v) has whole fractional bits that fit
    a 16-bit word, Adam's ratio shift is >= 0, the master is at least as fine as the
    weights, and the update's shift is 0..30. Widths by the class table. Written from
    the shift table, not from policy.check's list."""
    widths = {"weights": 16, "acts": 16, "logits": 24, "grads": 16, "pgrads": 32,
              "adam_m": 32, "adam_v": 32, "master": 32}
    low = {"pgrads": 8, "adam_m": 8, "adam_v": 8, "master": 8}
    for k, f in c.items():
        if f is not None and not low.get(k, 4) <= f.bits <= widths[k]:
            return False
    F = {k: (f.frac_bits if f is not None else None) for k, f in c.items()}
    shifts = [F["weights"] + F["acts"] - F["logits"], 2 * F["acts"] + 1 - F["logits"],
              16 - F["logits"], F["grads"] + F["acts"] - F["pgrads"]]
    if min(shifts) < 0 or F["adam_v"] % 2 or F["adam_v"] // 2 > 15:
        return False
    if 13 + F["adam_v"] // 2 - F["adam_m"] < 0:
        return False
    store = F["master"] if c["master"] is not None else F["weights"]
    if c["master"] is not None and F["master"] < F["weights"]:
        return False
    u = 45 - lr_q30.bit_length() + 13 - store
    return 0 <= u <= 30


def q(i, f):
    return QFormat(i, f)


@st.composite
def class_formats(draw):
    def fmt(lo, hi):
        bits = draw(st.integers(lo - 1, hi + 1))
        i = draw(st.integers(1, max(1, bits)))
        return q(i, max(0, bits - i))

    c = {"weights": fmt(4, 16), "acts": fmt(4, 16), "logits": fmt(4, 24), "grads": fmt(4, 16),
         "pgrads": fmt(8, 32), "adam_m": fmt(8, 32), "adam_v": fmt(8, 32),
         "master": fmt(8, 32) if draw(st.booleans()) else None}
    return c, draw(st.sampled_from([round(lr * 2**30) for lr in (0.01, 0.001, 0.3, 1e-6)]))


@settings(max_examples=500, deadline=None)
@given(case=class_formats())
def test_the_rule_accepts_exactly_what_the_shift_table_allows(case):
    c, lr_q30 = case
    got = policy.check(c, lr_q30)
    assert (got is None) == shift_oracle(c, lr_q30), (c, lr_q30, got)


def test_validity_cases_break_the_rule_they_name():
    for case in policy.validity_cases():
        try:
            fmts = {k: policy.parse_format(k, v) for k, v in case["classes"].items()}
            got = policy.check(fmts, case["lr_q30"], rounding=case["rounding"])
            got = 0 if got is None else got[0]
        except PolicyError as e:
            got = e.rule
        assert got == case["rule"], (case, got)


def test_issue_9_item_8_policies_are_valid():
    """Both were refused by one side before: now one rule accepts both."""
    assert make_policy("q15.1", "stochastic", "q15.16").adam_e == 16
    assert make_policy("q8.8", master="q8.24").weight_store.hi == 2**30


SATURATING = ["weights=q2.6,acts=q4.4", "weights=q1.3,acts=q1.3,logits=q3.3,grads=q1.3,"
              "pgrads=q8.0,adam_m=q8.0,adam_v=q8.0,master=q4.12",
              "weights=q1.15,acts=q1.15,grads=q1.15,logits=q1.15,master=q1.29",
              "weights=q16.0,acts=q16.0,grads=q16.0,logits=q24.0,pgrads=q32.0,master=q16.13",
              "weights=q8.8,acts=q2.14,pgrads=q16.16,adam_m=q20.12,adam_v=q12.20"]


@pytest.mark.parametrize("spec", SATURATING)
@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
def test_valid_extreme_policies_keep_every_intermediate_in_bounds(spec, rounding):
    """Training steps with --strict from weights at the ends of their range (so that
    activations, gradients and Adam's state saturate): no intermediate leaves the
    contract's bounds."""
    p = parse_policy(spec, rounding=rounding, lr=0.3)
    ctx = ops.Ctx(p, strict=True)
    rng = np.random.default_rng(len(spec))
    s = p.weight_store
    store = rng.choice([s.lo, s.hi, 0, s.lo // 3], N_PARAMS)
    opt = IntAdam(p, 1)
    tokens = [26, *rng.integers(0, 26, 15).tolist(), 26]
    for step in range(3):
        flat = store if p.master is None else ops.shift_round(
            store, p.master.frac_bits - p.weights.frac_bits).clip(p.weights.lo, p.weights.hi)
        _, cache = forward(ctx, flat, np.array(tokens[:-1]), np.array(tokens[1:]))
        g = np.zeros(N_PARAMS, dtype=np.int64)
        backward(ctx, flat, cache, g)
        opt.step(store, g, step, 3, ctx)
    assert sum(ctx.saturations.values()) > 0  # the inputs did reach the limits


# --- 4. errors: one line naming the class and the reason ---------------------------


@pytest.mark.parametrize("argv, fragments", [
    (["--policy", "wieghts=q2.6"], ["unknown class 'wieghts'", "weights, acts"]),
    (["--policy", "weights=q2.x"], ["weights=q2.x", "not a format"]),
    (["--policy", "weights=q9.9"], ["weights=q9.9", "18 bits", "4 to 16"]),
    (["--policy", "acts=q4.4,logits=q8.10"], ["logits=q8.10", "at most 2*Fa + 1 = 9"]),
    (["--policy", "adam_v=q3.29"], ["adam_v=q3.29", "even"]),
    (["--policy", "weights=q2.6,weights=q2.6"], ["weights is given twice"]),
    (["--policy", "int16", "--format", "q8.8"], ["--format q8.8", "preset int16"]),
    (["--policy", "weights=q14.2"], ["weights=q14.2", "too coarse"]),
    (["--policy", "master=q4.20", "--master", "q4.24"], ["disagree"]),
    (["--policy", "nosuch.json"], ["nosuch.json", "cannot read"]),
    (["--policy", "int16", "--float"], ["--float", "exclude"]),
])
def test_bad_policies_are_one_line(argv, fragments, tmp_path, capsys):
    code = cli.main(["train", "--steps", "1", "--quiet", "--out", str(tmp_path / "r"), *argv])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qgpt: error:") and "Traceback" not in err
    for f in fragments:
        assert f in lines[0], f"{f!r} not in {lines[0]!r}"
    assert not (tmp_path / "r").exists()


def test_train_with_a_policy_records_it(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "--policy", "weights=q2.6,acts=q4.4", "--rounding",
                     "stochastic", "--steps", "5", "--quiet", "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith("weights-q2.6_acts-q4.4: ")  # the folder label
    cfg = json.loads((out / "config.json").read_text())
    want = parse_policy("weights=q2.6,acts=q4.4", rounding="stochastic")
    assert cfg["config"]["policy"] == want.spec and cfg["config"]["format"] == "q2.6"
    assert cfg["policy"] == json.loads(json.dumps(want.describe()))
    # resume with the same policy spelled differently is the same run
    assert cli.main(["train", "--policy", "acts=q4.4,weights=Q2.6", "--rounding",
                     "stochastic", "--steps", "5", "--quiet", "--out", str(out),
                     "--resume"]) == 0


# --- 5. no float in a training step (issue 9, item 10a) ----------------------------

FLOAT_FUNCTIONS = ("sqrt", "frexp", "exp", "exp2", "log", "log2", "floor", "ceil", "round",
                   "rint", "true_divide", "divide", "power", "float_power", "ldexp", "float64",
                   "float32")


def test_a_training_step_uses_no_float(monkeypatch):
    """forward, backward and Adam with numpy's float functions made to raise give the
    same integers (and int64 arrays) as without."""
    p = parse_policy("weights=q2.6,acts=q4.4", rounding="stochastic")

    def steps():
        ctx = ops.Ctx(p, strict=True)
        store = np.arange(N_PARAMS, dtype=np.int64) % 97 - 48
        opt = IntAdam(p, 5)
        tokens = np.array([26, 4, 12, 12, 0, 26])
        for step in range(3):
            _, cache = forward(ctx, store, tokens[:-1], tokens[1:])
            g = np.zeros(N_PARAMS, dtype=np.int64)
            backward(ctx, store, cache, g)
            opt.step(store, g, step, 3, ctx)
        for a in (store, g, opt.m, opt.v):
            assert a.dtype == np.int64
        return store.copy(), opt.m.copy(), opt.v.copy()

    want = steps()

    def refuse(name):
        def f(*a, **k):
            raise AssertionError(f"np.{name} called in a training step")
        return f

    for name in FLOAT_FUNCTIONS:
        monkeypatch.setattr(np, name, refuse(name))
    got = steps()
    monkeypatch.undo()
    for w, g_ in zip(want, got, strict=True):
        assert np.array_equal(w, g_)


# --- 6. presets and issue 13's state in run folders -------------------------------


def test_int8_preset_and_its_bytes():
    p = parse_policy("int8")
    assert p.spec == ("weights=q2.6,acts=q4.4,logits=q8.4,grads=q2.14,pgrads=q2.14,"
                      "adam_m=b8x64,adam_v=b8x64,master=none") and p.rounding == "kahan"
    # weights 1 + kahan 1 + pgrads 2 + m 1 + v 1 bytes a parameter, one shift byte a block
    assert p.state_bytes() == 4192 * 6 + 2 * 66
    assert parse_policy("int8", rounding="pseudo").rounding == "pseudo"
    assert (p.m_wide, p.v_wide) == (QFormat(14, 18), QFormat(4, 28))


def test_int8_run_resumes_bit_identically(tmp_path, capsys):
    """Block shifts and the Kahan buffer go through the checkpoint."""
    whole, part = tmp_path / "whole", tmp_path / "part"
    args = ["train", "--policy", "int8", "--steps", "12", "--checkpoint-every", "6", "--quiet"]
    assert cli.main([*args, "--out", str(whole)]) == 0
    from qgpt import checkpoint

    meta, arrays = checkpoint.load(whole / "checkpoint.bin")
    assert {"adam_m_shift", "adam_v_shift", "kahan_comp"} <= set(arrays)
    assert np.abs(arrays["kahan_comp"]).max() > 0 and arrays["adam_m_shift"].max() > 0
    # stop after 6 steps (a checkpoint), then resume to 12
    from qgpt import train as training

    cfg = training.load_run(whole)[1]
    ds = data.load(cfg.data)
    model = make_model(cfg)
    for step, _, _ in training_steps(model, ds, cfg):
        if step == 5:
            break
    part.mkdir()
    training.save_state(part, model, cfg, 6, 0.0, ds)
    resumed = make_model(cfg)
    meta6, arrays6 = checkpoint.load(part / "checkpoint.bin")
    resumed.load_state(meta6, arrays6)
    for _ in training_steps(resumed, ds, cfg, start=6):
        pass
    _, final = resumed.state()
    for k, a in arrays.items():
        assert np.array_equal(final[k], a), k


# --- 7. host and firmware accept the same policies (issue 9, item 8) ---------------


@pytest.fixture(scope="module")
def firmware_policy():
    """firmware/policy.py (plain Python, no viper) under CPython, with micropython.const
    as the identity."""
    import importlib.util
    import sys
    import types
    from pathlib import Path

    shim = types.ModuleType("micropython")
    shim.const = lambda x: x
    saved = sys.modules.get("micropython")
    sys.modules["micropython"] = shim
    path = Path(__file__).resolve().parent.parent / "firmware" / "policy.py"
    spec = importlib.util.spec_from_file_location("firmware_policy", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    finally:
        if saved is None:
            del sys.modules["micropython"]
        else:
            sys.modules["micropython"] = saved
    return module


def host_rule(classes, lr_q30, rounding):
    try:
        fmts = {k: policy.parse_format(k, v) for k, v in classes.items()}
        broken = policy.check(fmts, lr_q30, rounding=rounding)
    except PolicyError as e:
        return e.rule
    return 0 if broken is None else broken[0]


def test_firmware_refuses_what_the_host_refuses(firmware_policy):
    for case in policy.validity_cases():
        got = firmware_policy.check(case["classes"], case["lr_q30"], case["rounding"])
        assert got == case["rule"], (case, got)


def test_the_firmwares_refusals_name_the_class_and_format_as_the_host_does(firmware_policy,
                                                                          monkeypatch):
    # firmware/policytext.py holds the reasons' text (loaded only to say one): every
    # refused case's line is "policy: CLASS=FORMAT...: REASON (rule N)", naming the class
    # and the format the host's message names first
    import re
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "firmware"))
    said = 0
    for case in policy.validity_cases():
        if case["rule"] == 0:
            continue
        classes = dict(case["classes"])
        fw = firmware_policy
        try:
            fw.check(None, case["lr_q30"], case["rounding"], fw.resolve("q4.12", classes))
        except fw.PolicyError as e:
            line = str(e)
        else:
            raise AssertionError(f"{case}: the firmware accepts it")
        assert re.fullmatch(rf"policy: \S.* \(rule {case['rule']}\)", line), (case, line)
        try:
            fmts = {k: policy.parse_format(k, v) for k, v in classes.items()}
            host = policy.check(fmts, case["lr_q30"], rounding=case["rounding"])[1]
        except PolicyError as h:
            host = str(h)
        named = re.match(r"(\w+=\S+?)(:| with)", host)
        if named and case["rule"] < 7:  # rule 7: the host names the learning rate instead
            assert line.startswith("policy: " + named.group(1)), (case, line, host)
            said += 1
    assert said >= 5


@settings(max_examples=300, deadline=None)
@given(case=class_formats(), rounding=st.sampled_from(["nearest", "stochastic", "kahan"]))
def test_firmware_and_host_rules_agree_on_random_policies(firmware_policy, case, rounding):
    c, lr_q30 = case
    text = {k: (f.name if f is not None else "none") for k, f in c.items()}
    want = host_rule(text, lr_q30, rounding)
    got = firmware_policy.check(text, lr_q30, rounding)
    assert got == want, (text, lr_q30, rounding, got, want)
