"""The run's setup on the device, its second stage (qgpt_train: after runcfg.setup,
before layout.setup), dropped from memory after use with policy.py
(firmware/README.md, "Memory"): the config's formats, rounding, master weights and
precision policy, checked and resolved by policy.py (docs/arithmetic.md section 3).
"""

import sys

import policy
from runbase import RunError


def _format(name, key, bits):
    """(I, F) of the format `name` given for the config's key, at most `bits` bits."""
    try:
        i, f = policy.parse_format(name)
    except (ValueError, IndexError, TypeError, AttributeError):
        raise RunError(f"{key} {name!r} is not a format like q4.12") from None
    if i < 1 or f < 0 or i + f > bits:
        raise RunError(f"{key} {name}: want qI.F with I >= 1 and at most {bits} bits")
    return i, f


def setup(cfg, _):
    """The run config's (runcfg.setup's) formats, rounding, master and policy, checked
    and resolved: cfg["numbers"] = (the Model's numbers (firmware/model.py's
    Model.__init__ lists them; the parameter table's offsets are layout.setup's),
    prng.init_tensor's (sh, lo, hi, nb) for the initial weights); the start line's
    settings ("formats") and the checkpoint's config ("train_config", JSON). A config
    the validity rule refuses raises RunError: `policy: CLASS=FORMAT: REASON (rule N)`;
    policy.py leaves memory after use."""
    data = _format(cfg["format"], "format", 16)
    if cfg["rounding"] not in policy.ROUNDINGS:
        raise RunError(f"rounding {cfg['rounding']!r}: want one of "
                       f"{', '.join(policy.ROUNDINGS)}")
    master = None
    if cfg["master"] in ("", "none", None):
        cfg["master"] = ""
    else:
        master = _format(cfg["master"], "master", 32)
    classes = cfg["policy"] or {}
    given = classes.get("master")
    if master is not None and given is not None:
        other = None if given in ("", "none") else _format(given, "policy master", 32)
        if other != master:
            raise RunError(f"master {cfg['master']} and the policy's master {given} differ:"
                           " give one of them")
    try:
        P = policy.Policy(data, cfg["rounding"], master, cfg["lr_q30"], classes)
    except ValueError as e:
        raise RunError(str(e)) from None
    W = P.formats[0]
    nb, fwd, bwd, opt, schedule, wide, blocks = P.numbers()
    cfg["numbers"] = (nb, None, fwd, bwd, opt, schedule, wide, blocks), P.init_args()
    spec = policy.canonical(P.formats)
    w, master = W.name, P.master.name if P.master else ""
    # the run's formats leave memory before those of format's defaults are made (the
    # policy's stage is the setup's fullest: firmware/README.md, "Memory")
    P = W = None
    defaults = policy.canonical(policy.resolve(w, {"master": master} if master else {}))
    cfg["formats"] = (f"format={w} rounding={cfg['rounding']} master={master or '-'} "
                      f"policy={spec}")
    # the checkpoint's config: the host's TrainConfig fields (qgpt/train.py), with the
    # normal form of 3.8: format = weights, policy "" when the classes are format's
    # defaults; restore._compact makes it JSON bytes, which take less memory for the run
    # than the dict and which the checkpoint writes as they are (not here: the policy's
    # stage is the setup's fullest)
    cfg["train_config"] = {
        "data": cfg["data"], "steps": cfg["steps"], "seed": cfg["seed"], "lr": cfg["lr"],
        "format": w, "rounding": cfg["rounding"], "master": master,
        "policy": "" if defaults == spec else spec,
        "lowercase": False, "skip_long": False, "checkpoint_every": cfg["checkpoint_every"],
        "strict": False}
    for k in ("format", "rounding", "master", "policy", "lr", "lr_q30"):
        del cfg[k]  # in train_config and the numbers now: memory for the run
    del sys.modules["policy"]
