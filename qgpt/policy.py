"""The precision policy: a Q format per tensor class (docs/arithmetic.md, section 3).

Eight classes (weights, acts, logits, grads, pgrads, adam_m, adam_v, master) each get
a format; `--format qI.F` sets weights and acts, and every class not named follows
from the classes before it by the rules of section 3.1. parse_policy() reads a SPEC
(pairs, a preset, or a JSON file), resolves the defaults and checks the one validity
rule of section 3.4, which the firmware checks too (firmware/policy.py). Every run
records policy.describe() in its config.json.
"""

import json
import re
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path

from qgpt import qformat
from qgpt.params import BLOCK, N_PARAMS

CLASSES = ("weights", "acts", "logits", "grads", "pgrads", "adam_m", "adam_v", "master")
WIDTHS = {"weights": (4, 16), "acts": (4, 16), "logits": (4, 24), "grads": (4, 16),
          "pgrads": (8, 32), "adam_m": (8, 32), "adam_v": (8, 32), "master": (8, 32)}
BASE_FORMAT = "q4.12"  # weights and acts without --format
GRAD = qformat.QFormat(2, 14)  # activation gradients: measured |max| < 1 in float runs
LOGIT_EXTRA_BITS = 4  # logits get 4 more integer bits than the activations
ADAM_V = qformat.QFormat(4, 28)  # Adam's second moment: v < 4 (int32)
STATE_BITS = 32  # the default parameter gradients and Adam m are int32
V_FRAC = ADAM_V.frac_bits  # the defaults, for callers that predate the policy
GS_FRAC = V_FRAC // 2
GS_WORD = qformat.QFormat(16 - GS_FRAC, GS_FRAC)  # the gradient Adam squares: a 16-bit word
R_FRAC = 13  # Adam ratio m / sqrt(v), clamped to [-4, 4]
R_MAX = 4
# Adam betas as Q15 coefficients of (1 - beta): beta1 = 1 - 4915/2**15, beta2 = 1 - 328/2**15
ADAM_C1 = 4915
ADAM_C2 = 328
PROB_FRAC = 15  # softmax probabilities, unsigned Q15 in [0, 2**15]
M_LIMIT = (1 << 30) - 1  # Adam m is saturated symmetrically, at most to this

UPDATE_ROUNDINGS = (*qformat.ROUNDINGS, "pseudo", "kahan")  # section 9.5, 9.6
KAHAN_BITS = 8  # the compensation buffer of rounding=kahan: 8 bits below the weight's LSB
BLOCK_BITS = (4, 16)  # block-scaled Adam state: mantissa bits
BLOCK_SIZES = (8, 1024)  # and values per block

PRESETS = {
    "int16": {"weights": "q4.12", "acts": "q4.12", "rounding": "nearest"},
    "int8": {"weights": "q2.6", "acts": "q4.4", "pgrads": "q2.14", "adam_m": "b8x64",
             "adam_v": "b8x64", "rounding": "kahan"},
}


@dataclass(frozen=True)
class BlockFormat:
    """bBxN: B-bit mantissas in blocks of N parameters, a power-of-two shift per block
    (arithmetic.md, section 9.6); for adam_m (signed) and adam_v (its square root,
    unsigned)."""

    bits: int
    block: int

    @property
    def name(self):
        return f"b{self.bits}x{self.block}"

    def __str__(self):
        return self.name

    def describe(self):
        return (f"{self.name}: {self.bits}-bit mantissas, blocks of {self.block} with a "
                "power-of-two scale each")

    def n_blocks(self):
        return -(-N_PARAMS // self.block)


def wide_state(classes):
    """(m, v) as the QFormats Adam computes in (section 9.6): the classes themselves, or,
    for a block-scaled class, its 32-bit default."""
    g, a, m, v = (classes[c] for c in ("grads", "acts", "adam_m", "adam_v"))
    if isinstance(v, BlockFormat):
        v = ADAM_V
    if isinstance(m, BlockFormat):
        pfrac = max(0, g.frac_bits + a.frac_bits - guard(BLOCK, g.bits, a.bits))
        mfrac = min(pfrac, R_FRAC + ADAM_V.frac_bits // 2)
        m = qformat.QFormat(STATE_BITS - mfrac, mfrac)
    return m, v


class PolicyError(qformat.FormatError):
    """A bad policy, worded for the user: one line naming the class and the reason."""

    def __init__(self, message, rule=1):
        prefix = "" if message.startswith("policy: ") else "policy: "
        super().__init__(prefix + message)
        self.rule = rule

    def __reduce__(self):  # across processes (sweeps): the same message and rule
        return PolicyError, (str(self), self.rule)


@cache
def guard(n, bits_a, bits_b):
    """Bits each product of an n-term dot product is shifted right before the sum, so that
    the sum of n products of a bits_a-bit and a bits_b-bit word stays within 2**30."""
    return max(0, (n - 1).bit_length() + (bits_a - 1) + (bits_b - 1) - 30)


def container_bytes(fmt):
    """Bytes per value on the device (section 3.3): 1 up to 8 bits, 2 up to 16, else 4."""
    if fmt is None:
        return 0
    return 1 if fmt.bits <= 8 else 2 if fmt.bits <= 16 else 4


@dataclass(frozen=True)
class Policy:
    weights: qformat.QFormat  # the weights as the forward pass sees them
    acts: qformat.QFormat  # activations
    logits: qformat.QFormat  # attention scores and lm_head logits
    grads: qformat.QFormat  # activation gradients
    pgrads: qformat.QFormat  # parameter gradients
    adam_m: qformat.QFormat | BlockFormat
    adam_v: qformat.QFormat | BlockFormat
    master: qformat.QFormat | None  # master weights (what Adam updates), or None
    rounding: str = "nearest"  # rounding of weight updates: nearest | floor | stochastic
    lr: float = 0.01

    # --- names for callers that predate the policy (a single data format) ---

    @property
    def data(self):
        """The data format of a policy whose weights and acts agree (the --format runs)."""
        if self.weights != self.acts:
            raise AttributeError(f"policy {self.spec} has no single data format")
        return self.weights

    @property
    def grad(self):
        return self.grads

    @property
    def pgrad_frac(self):
        return self.pgrads.frac_bits

    @property
    def m_frac(self):
        return self.m_wide.frac_bits

    @cached_property
    def m_wide(self):
        """The format Adam's m is computed in (adam_m, or its 32-bit default if blocked)."""
        return wide_state(self.classes())[0]

    @cached_property
    def v_wide(self):
        return wide_state(self.classes())[1]

    # --- derived numbers (section 3.6) ---

    @cached_property
    def pgrad_guard(self):
        """The guard of a weight gradient's 16-term sum (sets the default of pgrads)."""
        return guard(BLOCK, self.grads.bits, self.acts.bits)

    @cached_property
    def dw_shift(self):
        """linear_backward's dW: the sum of dy*x (Fg + Fa bits) rounded to Fp bits."""
        return self.grads.frac_bits + self.acts.frac_bits - self.pgrads.frac_bits

    @cached_property
    def sqrt_frac(self):
        """Fh = Fv / 2: fractional bits of sqrt(v) and of the gradient Adam squares."""
        return self.v_wide.frac_bits // 2

    @cached_property
    def adam_e(self):
        """Adam's ratio shift e: r = |m| * 2**e / den in Q13 (section 9.4)."""
        return R_FRAC + self.sqrt_frac - self.m_wide.frac_bits

    @cached_property
    def m_limit(self):
        """Adam m is saturated to [-m_limit, m_limit] (section 3.1)."""
        return min(self.m_wide.hi, M_LIMIT)

    @cached_property
    def adam_m_range(self):
        """adam_m's saturation, symmetric: [-m_limit, m_limit] (a QFormat-like range)."""
        return _Range(-self.m_limit, self.m_limit)

    @cached_property
    def gs_word(self):
        """The gradient Adam squares: a 16-bit word with Fh fractional bits (9.2)."""
        return qformat.QFormat(16 - self.sqrt_frac, self.sqrt_frac)

    @cached_property
    def weight_store(self):
        """The format the optimizer writes: the master weights, or the data weights."""
        return self.master or self.weights

    @cached_property
    def lr_q30(self):
        return round(self.lr * 2**30)

    @cached_property
    def alpha_frac(self):
        """Fractional bits of the step size alpha_t: the most that keep alpha <= 2**15."""
        return 45 - self.lr_q30.bit_length()

    @cached_property
    def update_shift(self):
        """Bits the update alpha * r drops to land in the weight store's format."""
        return self.alpha_frac + R_FRAC - self.weight_store.frac_bits

    @cached_property
    def rms_guard(self):
        """The mean square's shift: guard(16, ba, ba) rounded up to even."""
        g = guard(16, self.acts.bits, self.acts.bits)
        return g + (g & 1)

    @cached_property
    def rms_fm(self):
        """Fractional bits of the mean square (the +4 is the /16)."""
        return 2 * self.acts.frac_bits - self.rms_guard + 4

    @cached_property
    def score_shift(self):
        return 2 * self.acts.frac_bits + 1 - self.logits.frac_bits

    @cached_property
    def lm_head_shift(self):
        return self.weights.frac_bits + self.acts.frac_bits - self.logits.frac_bits

    def classes(self):
        """Class name -> format (master None without master weights)."""
        return {c: getattr(self, c) for c in CLASSES}

    @cached_property
    def spec(self):
        """The canonical SPEC: all eight classes in order (section 3.2)."""
        return ",".join(f"{c}={f.name if f else 'none'}" for c, f in self.classes().items())

    @cached_property
    def short_spec(self):
        """The shortest SPEC of this policy: weights and acts, then the classes that
        differ from their defaults (the label of tables and run folders)."""
        base = resolve({"weights": self.weights.name, "acts": self.acts.name},
                       self.rounding, self.lr, validate=False)
        return ",".join(f"{c}={_name(f) or 'none'}" for c, f in self.classes().items()
                        if c in ("weights", "acts") or f != getattr(base, c))

    def is_format_default(self):
        """True if every class is what --format (the weights' format) and --master imply:
        then the run's TrainConfig.policy is "" (section 3.8)."""
        w = self.weights.name
        return self == resolve({"weights": w, "acts": w, "master": _name(self.master)},
                               self.rounding, self.lr, validate=False)

    def state_bytes(self):
        """Device bytes of the training state (section 3.3): weights, master, gradient,
        Adam m and v, each in its container."""
        per = sum(container_bytes(f) for f in (self.weights, self.master, self.pgrads,
                                                 self.adam_m, self.adam_v))
        per += 1 if self.rounding == "kahan" else 0  # the 8-bit compensation buffer
        shifts = sum(f.n_blocks() for f in (self.adam_m, self.adam_v)
                     if isinstance(f, BlockFormat))
        return N_PARAMS * per + shifts

    def shifts(self):
        return {
            "embed_shift": self.weights.frac_bits - self.acts.frac_bits,
            "rms_guard": self.rms_guard, "rms_fm": self.rms_fm,
            "linear_shift": self.weights.frac_bits, "lm_head_shift": self.lm_head_shift,
            "score_shift": self.score_shift, "attn_out_shift": PROB_FRAC,
            "ce_back_shift": PROB_FRAC - self.grads.frac_bits,
            "dx_shift": self.weights.frac_bits, "pgrad_guard": self.pgrad_guard,
            "dw_shift": self.dw_shift, "attn_back_shift": self.acts.frac_bits,
            "rms_back_shift": self.acts.frac_bits + 4,
            "embed_back_shift": self.grads.frac_bits - self.pgrads.frac_bits,
            "gm_shift": self.pgrads.frac_bits - self.m_wide.frac_bits,
            "gs_shift": self.pgrads.frac_bits - self.sqrt_frac,
            "adam_e": self.adam_e, "update_shift": self.update_shift,
            "master_shift": (self.master.frac_bits - self.weights.frac_bits
                             if self.master else 0),
        }

    def validate(self):
        """Raise PolicyError for the first rule of section 3.4 that fails."""
        if self.rounding not in UPDATE_ROUNDINGS:
            raise PolicyError(f"rounding {self.rounding!r} is unknown: want one of "
                              f"{', '.join(UPDATE_ROUNDINGS)}")
        broken = check(self.classes(), self.lr_q30, self.lr, self.rounding)
        if broken:
            raise PolicyError(broken[1], broken[0])
        return self

    def describe(self):
        """The resolved policy as config.json and summary.json record it (section 3.8)."""
        d = {"spec": self.spec}
        d.update({c: _name(f) or "none" for c, f in self.classes().items()})
        d.update({
            "ranges": {c: f.describe() for c, f in self.classes().items() if f},
            "adam_wide": {"adam_m": self.m_wide.name, "adam_v": self.v_wide.name},
            "rounding": self.rounding,
            "softmax_probs": f"unsigned Q{PROB_FRAC}",
            "lr_q30": self.lr_q30,
            "alpha_frac": self.alpha_frac,
            "shifts": self.shifts(),
            "state_bytes": self.state_bytes(),
        })
        return d


@dataclass(frozen=True)
class _Range:
    lo: int
    hi: int


def _name(fmt):
    return fmt.name if fmt else ""


# --- the validity rule (section 3.4), shared in shape with firmware/policy.py ---


def check(classes, lr_q30, lr=None, rounding="nearest"):
    """The first rule of section 3.4 that the class -> QFormat dict breaks, as
    (rule, message), or None. Rule 1 (widths) is checked when parsing (parse_format)."""
    w, a, lg, g = (classes[c] for c in ("weights", "acts", "logits", "grads"))
    p, m, v, master = (classes[c] for c in ("pgrads", "adam_m", "adam_v", "master"))
    for c, f in classes.items():
        if isinstance(f, BlockFormat):
            if c not in ("adam_m", "adam_v"):
                return 1, f"{c}={f.name}: only adam_m and adam_v may be block-scaled"
            if not BLOCK_BITS[0] <= f.bits <= BLOCK_BITS[1]:
                return 1, (f"{c}={f.name}: {f.bits}-bit mantissas, want {BLOCK_BITS[0]} to "
                           f"{BLOCK_BITS[1]}")
            if not BLOCK_SIZES[0] <= f.block <= BLOCK_SIZES[1]:
                return 1, (f"{c}={f.name}: blocks of {f.block}, want {BLOCK_SIZES[0]} to "
                           f"{BLOCK_SIZES[1]}")
        elif f is not None and not WIDTHS[c][0] <= f.bits <= WIDTHS[c][1]:
            return 1, f"{c}={f.name}: {f.bits} bits, {c} must have {WIDTHS[c][0]} to {WIDTHS[c][1]}"
    m, v = wide_state(classes)
    fw, fa, fl = w.frac_bits, a.frac_bits, lg.frac_bits
    if fl > fw + fa:
        return 2, (f"logits={lg.name}: {fl} fractional bits, at most weights' + acts' "
                   f"{fw} + {fa} = {fw + fa} (lm_head's shift)")
    if fl > 2 * fa + 1:
        return 2, (f"logits={lg.name}: {fl} fractional bits, at most 2*Fa + 1 = {2 * fa + 1} "
                   "(the attention scores' shift)")
    if fl > 16:
        return 2, f"logits={lg.name}: {fl} fractional bits, at most 16 (the loss)"
    if p.frac_bits > g.frac_bits + fa:
        return 3, (f"pgrads={p.name}: {p.frac_bits} fractional bits, at most grads' + acts' "
                   f"{g.frac_bits} + {fa} = {g.frac_bits + fa} (the weight gradient's shift)")
    if v.frac_bits % 2 or v.frac_bits > 30:
        return 4, (f"adam_v={v.name}: {v.frac_bits} fractional bits, want an even number "
                   "up to 30 (sqrt(v) gets half of them)")
    e = R_FRAC + v.frac_bits // 2 - m.frac_bits
    if e < 0:
        return 5, (f"adam_m={m.name}: {m.frac_bits} fractional bits, at most 13 + "
                   f"{v.frac_bits // 2} (half of adam_v's) = {13 + v.frac_bits // 2} "
                   "(Adam's ratio shift)")
    if master is not None and master.frac_bits < fw:
        return 6, (f"master={master.name}: {master.frac_bits} fractional bits, at least "
                   f"weights' {fw}")
    if lr is not None and not 0 < lr < 1:
        return 7, f"learning rate {lr} must lie in (0, 1)"
    if lr_q30 < 1:
        return 7, f"learning rate {lr}: round(lr * 2**30) = {lr_q30}, want at least 1"
    store = master or w
    u = 45 - lr_q30.bit_length() + R_FRAC - store.frac_bits
    which = "master" if master is not None else "weights"
    if u > 30:
        return 7, (f"{which}={store.name} is too coarse for lr {lr}: every update would "
                   f"round to zero (a shift of {u} bits, at most 30 work); give it more "
                   "fractional bits, master weights, or a larger lr")
    if u < 0:
        return 7, (f"{which}={store.name} has more fractional bits than the update "
                   f"(a shift of {u} bits): give it fewer fractional bits or a smaller lr")
    if rounding == "kahan" and master is not None:
        return 7, (f"master={master.name} with rounding=kahan: kahan keeps its own "
                   "compensation below the weights; drop one")
    return None


# --- parsing and resolving ---


_BLOCK = re.compile(r"b(\d+)x(\d+)")


def parse_format(cls, text):
    """One class's format: 'q2.6' -> QFormat (None for master 'none'); PolicyError
    naming the class otherwise (rule 1)."""
    if cls not in CLASSES:
        raise PolicyError(f"unknown class {str(cls)[:40]!r} (classes: {', '.join(CLASSES)})")
    t = str(text).strip().lower()
    if cls == "master" and t in ("", "none"):
        return None
    block = _BLOCK.fullmatch(t)
    if block and cls in ("adam_m", "adam_v"):
        return BlockFormat(int(block.group(1)), int(block.group(2)))
    lo, hi = WIDTHS[cls]
    try:
        fmt = qformat.parse(t, max_bits=99)
    except qformat.FormatError:
        raise PolicyError(f"{cls}={str(text)[:40]}: not a format qI.F with I >= 1 "
                          f"(e.g. q4.12); {cls} must have {lo} to {hi} bits") from None
    if not lo <= fmt.bits <= hi:
        raise PolicyError(f"{cls}={fmt.name}: {fmt.bits} bits, {cls} must have {lo} to {hi}")
    return fmt


def read_spec(spec):
    """A SPEC -> (preset or None, {class: text}, rounding or None), without resolving.

    SPEC: comma-separated CLASS=FORMAT pairs, optionally led by a preset name, or the
    path of a JSON file (ending in .json) with the same keys (and "preset")."""
    spec = "" if spec is None else str(spec).strip()
    if spec.lower().endswith(".json"):
        return _read_json_spec(spec)
    preset, named, rounding = None, {}, None
    items = [s.strip() for s in spec.split(",")] if spec else []
    for n, item in enumerate(items):
        if "=" not in item:
            if n == 0 and item.lower() in PRESETS:
                preset = item.lower()
                continue
            what = "a preset comes first" if item.lower() in PRESETS else \
                f"want CLASS=FORMAT or a preset ({', '.join(PRESETS)})"
            raise PolicyError(f"{item[:40]!r} in the SPEC: {what}")
        key, value = (s.strip() for s in item.split("=", 1))
        key = key.lower()
        rounding, named = _add_item(key, value, named, rounding)
    return preset, named, rounding


def _add_item(key, value, named, rounding):
    if key == "rounding":
        if rounding is not None:
            raise PolicyError("rounding is given twice")
        return value.lower(), named
    if key not in CLASSES:
        raise PolicyError(f"unknown class {key[:40]!r} (classes: {', '.join(CLASSES)})")
    if key in named:
        raise PolicyError(f"class {key} is given twice")
    named = dict(named)
    named[key] = value
    return rounding, named


def _read_json_spec(path):
    try:
        obj = json.loads(Path(path).read_text())
    except OSError as e:
        raise PolicyError(f"{path}: cannot read it ({e.strerror or e})") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise PolicyError(f"{path}: not JSON ({str(e)[:80]})") from None
    if not isinstance(obj, dict):
        raise PolicyError(f"{path}: want a JSON object of class -> format")
    preset = obj.pop("preset", None)
    if preset is not None and (not isinstance(preset, str) or preset.lower() not in PRESETS):
        raise PolicyError(f"{path}: preset {preset!r} is unknown (presets: {', '.join(PRESETS)})")
    named, rounding = {}, None
    for key, value in obj.items():
        if not isinstance(value, str):
            raise PolicyError(f"{path}: {str(key)[:40]} = {value!r}: want a format string")
        rounding, named = _add_item(str(key).lower(), value, named, rounding)
    return (preset.lower() if preset else None), named, rounding


def resolve(named, rounding="nearest", lr=0.01, validate=True):
    """Class -> format text (weights and acts at least, or defaults) -> Policy, every
    class not named following section 3.1."""
    fmts = {c: parse_format(c, t) for c, t in named.items()}
    weights = fmts.get("weights") or qformat.parse(BASE_FORMAT)
    acts = fmts.get("acts") or qformat.parse(BASE_FORMAT)
    logits = fmts.get("logits") or qformat.QFormat(acts.int_bits + LOGIT_EXTRA_BITS,
                                                    acts.frac_bits)
    grads = fmts.get("grads") or GRAD
    pfrac = max(0, grads.frac_bits + acts.frac_bits - guard(BLOCK, grads.bits, acts.bits))
    pdefault = qformat.QFormat(STATE_BITS - pfrac, pfrac)
    adam_v = fmts.get("adam_v") or ADAM_V
    vfrac = ADAM_V.frac_bits if isinstance(adam_v, BlockFormat) else adam_v.frac_bits
    mfrac = min(pfrac, R_FRAC + vfrac // 2)  # so that Adam's e >= 0 (rule 5)
    policy = Policy(weights=weights, acts=acts, logits=logits, grads=grads,
                    pgrads=fmts.get("pgrads") or pdefault,
                    adam_m=fmts.get("adam_m") or qformat.QFormat(STATE_BITS - mfrac, mfrac),
                    adam_v=adam_v, master=fmts.get("master"), rounding=rounding, lr=lr)
    return policy.validate() if validate else policy


def parse_policy(spec="", fmt=None, master=None, rounding=None, lr=0.01):
    """The resolved, checked Policy of `qgpt train [--format F] [--policy SPEC]
    [--master M] [--rounding R]`; PolicyError (one line) for a bad SPEC or combination.

    fmt sets weights and acts (SPEC pairs override it); a preset fixes them instead, so
    fmt with a preset is an error. rounding None: the SPEC's, else the preset's, else
    nearest; given, it overrides both."""
    preset, named, spec_rounding = read_spec(spec)
    base = {}
    if preset is not None:
        if fmt:
            raise PolicyError(f"--format {fmt} and the preset {preset} exclude each other: "
                              "a preset fixes the weights and acts (override them with "
                              "weights=..., acts=...)")
        base = dict(PRESETS[preset])
    else:
        f = qformat.parse(fmt).name if fmt else BASE_FORMAT  # --format's own message
        base = {"weights": f, "acts": f}
    preset_rounding = base.pop("rounding", None)
    if master not in (None, ""):
        m = parse_format("master", master)
        if "master" in named and parse_format("master", named["master"]) != m:
            raise PolicyError(f"--master {master} and master={named['master']} in the SPEC "
                              "disagree: give one")
        named = {**named, "master": master}
    merged = {**base, **named}
    mode = rounding or spec_rounding or preset_rounding or "nearest"
    return resolve(merged, mode, lr)


def train_settings(fmt, spec, master, rounding, lr):
    """What `qgpt train --format/--policy/--master/--rounding` records: (format, rounding,
    master, policy, label): TrainConfig's normal form (section 3.8), and the run folder's
    label (the format for --format runs, else the short SPEC)."""
    p = parse_policy(spec or "", fmt, master, rounding, lr)
    fmt_name, master_name, policy_spec = normal_form(p)
    label = fmt_name if not policy_spec else \
        p.short_spec.replace("=", "-").replace(",", "_")
    for name in PRESETS:  # a preset's own policy is labelled by its name
        if policy_spec and parse_policy(name, lr=lr) == p:
            label = name
    return fmt_name, p.rounding, master_name, policy_spec, label


def make_policy(fmt, rounding="nearest", master="", lr=0.01):
    """The policy of `--format fmt [--master master]`: every other class by default."""
    return parse_policy("", fmt, master or None, rounding, lr)


def from_train_config(cfg):
    """The Policy of a TrainConfig (format, rounding, master, lr, and policy: "" or the
    canonical SPEC, section 3.8)."""
    spec = getattr(cfg, "policy", "") or ""
    if spec:
        return parse_policy(spec, None, None, cfg.rounding, cfg.lr)
    return make_policy(cfg.format, cfg.rounding, cfg.master, cfg.lr)


def normal_form(policy):
    """(format, master, policy) of TrainConfig for a resolved policy (section 3.8)."""
    spec = "" if policy.is_format_default() else policy.spec
    return policy.weights.name, _name(policy.master), spec


def device_config(p):
    """The device config keys of a resolved policy (arithmetic.md 3.8): format, master,
    rounding, lr_q30 and policy (all eight classes), for qgpt device deploy and
    conformance."""
    return {"format": p.weights.name, "master": _name(p.master), "rounding": p.rounding,
            "lr": p.lr, "lr_q30": p.lr_q30,
            "policy": {c: _name(f) or "none" for c, f in p.classes().items()}}


def validity_cases():
    """Policies on both sides of each rule of section 3.4, for host-vs-firmware tests:
    dicts of classes (class -> format text), lr_q30, rounding and the rule broken (0:
    valid)."""
    lr = round(0.01 * 2**30)
    base = {c: _name(f) or "none" for c, f in make_policy("q4.12").classes().items()}

    def case(rule, lr_q30=lr, rounding="nearest", **over):
        return {"classes": {**base, **over}, "lr_q30": lr_q30, "rounding": rounding,
                "rule": rule}

    return [
        case(0),
        case(0, weights="q2.6", acts="q4.4", logits="q8.4", pgrads="q14.18", adam_m="q14.18"),
        case(0, weights="q15.1", acts="q15.1", logits="q19.1", pgrads="q21.11",
             adam_m="q21.11", master="q15.16"),
        case(0, weights="q8.8", acts="q8.8", logits="q12.8", pgrads="q14.18",
             adam_m="q14.18", master="q8.24"),
        case(0, rounding="kahan", weights="q2.6", acts="q4.4", logits="q8.4",
             pgrads="q14.18", adam_m="b8x64", adam_v="b8x64"),
        case(0, rounding="pseudo", adam_m="b16x256", adam_v="b4x8"),
        case(1, weights="q9.9"), case(1, acts="q2.1"), case(1, logits="q13.12"),
        case(1, pgrads="q1.6"), case(1, master="q9.24"), case(1, adam_m="b3x64"),
        case(1, adam_v="b8x2000"), case(1, adam_v="b8x4"), case(1, pgrads="b8x64"),
        case(2, logits="q1.17"), case(2, acts="q4.4", logits="q8.10"),
        case(2, weights="q8.0", acts="q4.4", logits="q8.6"),
        case(3, pgrads="q2.30"),
        case(4, adam_v="q3.29"), case(5, adam_m="q2.28"),
        case(5, adam_m="q1.29", adam_v="b8x64"),
        case(6, master="q4.11"),
        case(7, weights="q14.2"),
        case(7, lr_q30=1 << 29, weights="q1.15", acts="q1.15", logits="q5.15",
             pgrads="q7.25", adam_m="q7.25", master="q1.31"),
        case(7, rounding="kahan", master="q4.20"),
    ]
