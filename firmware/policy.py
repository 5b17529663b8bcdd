"""The precision policy on the device: every number the kernels take, computed once.

docs/arithmetic.md section 3: eight tensor classes, each with its own Q format
(3.1), resolved from the run's `format` and the config's `policy` object, checked by
the validity rule (3.4, the same rule numbers as qgpt/policy.py), stored in the
narrowest container (3.3), and the shifts of 3.6. Plain Python on unbounded ints;
nothing here runs per element. On a run, runpolicy.py (the second of the setup's
stages) resolves the config's policy here, then this module leaves memory.
"""

from micropython import const

BLOCK = 16  # positions (qgpt/params.py)
GRAD_FRAC = 14  # the default G = q2.14
GRAD_LO = -32768
GRAD_HI = 32767
PROB_FRAC = 15  # softmax probabilities, unsigned Q15
LOGIT_EXTRA_BITS = 4
V_FRAC = 28  # the default adam_v = q4.28
GS_FRAC = 14  # the default Fh = Fv / 2: sqrt(v)'s fractional bits
R_FRAC = 13  # Adam's ratio m / sqrt(v) in Q13
_KERNEL_RANGE = const(1073741824)  # 2**30: the range of a 32-bit format (section 1)
ROUNDINGS = ("nearest", "floor", "stochastic", "pseudo", "kahan")  # kernel modes 0 .. 4
# the classes of 3.1 in the canonical order (Policy.formats holds them in this order)
CLASSES = ("weights", "acts", "logits", "grads", "pgrads", "adam_m", "adam_v", "master")

# Names cost memory for good on a board (firmware/README.md, "Memory"): the derived
# numbers are locals of Policy.numbers, not attributes.


class PolicyError(ValueError):
    """A policy the validity rule refuses: args (the number of the rule in 3.4, then the
    reason's code and values for policytext.reason); str() is the one line
    "policy: REASON (rule N)". The reasons' text is policytext.py's, imported only to say
    one: a valid policy's run never has it in memory (firmware/README.md, "Memory")."""

    def __str__(self):
        from policytext import reason

        return f"policy: {reason(*self.args[1:])} (rule {self.args[0]})"


def bitlen(x):
    """int.bit_length() for x >= 0 (MicroPython's int has none)."""
    n = 0
    while x:
        x >>= 1
        n += 1
    return n


def guard(n, bits_a, bits_b):
    """Bits each product of an n-term dot product of bits_a- and bits_b-bit words is
    shifted right before the sum, so that the sum stays within 2**30 (section 3.7)."""
    return max(0, bitlen(n - 1) + (bits_a - 1) + (bits_b - 1) - 30)


def parse_format(name):
    """'q4.12' -> (4, 12); ValueError if it is not qI.F."""
    name = name.strip().lower()
    if name[:1] != "q" or "." not in name:
        raise ValueError(name)
    i, f = name[1:].split(".")
    return int(i), int(f)


class QFormat:
    """qI.F: a signed word of I + F bits with F fractional bits; a 32-bit format holds
    the kernel range [-2**30, 2**30] (section 1). nb: its container's bytes (3.3).
    With block > 0, bBxN of 9.6 instead (B = int_bits, N = block, F = 0): B-bit
    mantissas in blocks of N parameters with a power-of-two shift per block, for adam_m
    (signed) and adam_v (its square root, unsigned); nb: the mantissas' container."""

    def __init__(self, int_bits, frac_bits, block=0):
        self.int_bits = int_bits
        self.frac_bits = frac_bits
        self.block = block
        self.bits = b = int_bits + frac_bits
        if b >= 32:
            self.lo, self.hi = 0 - _KERNEL_RANGE, _KERNEL_RANGE
        else:
            self.lo = -(1 << (b - 1))
            self.hi = (1 << (b - 1)) - 1
        self.nb = 1 if b <= 8 else (2 if b <= 16 else 4)

    @property
    def name(self):
        if self.block:
            return "b" + str(self.bits) + "x" + str(self.block)
        return f"q{self.int_bits}.{self.frac_bits}"


def resolve(data, policy):
    """The eight formats of 3.1 (a list in CLASSES order; master may be None), then the
    wide formats Adam computes m and v in (9.6: the same as adam_m, adam_v unless those
    are block-scaled): the
    classes named in the dict `policy`, the others by default from `data` (the run's
    format qI.F, the base of weights and acts). PolicyError (rule 1) for an unknown
    class or a format that does not parse."""
    got = {}
    for k in policy:
        if k not in CLASSES:
            raise PolicyError(1, 0, k, ", ".join(CLASSES))
        if k == "master" and policy[k] in ("", "none", None):
            continue
        try:
            text = policy[k].strip().lower()
            if text[:1] == "b" and k in ("adam_m", "adam_v"):
                b, n = text[1:].split("x")
                got[k] = QFormat(int(b), 0, int(n))
                continue
            i, f = parse_format(text)
        except (ValueError, AttributeError, TypeError):
            raise PolicyError(1, 1, k, policy[k]) from None
        got[k] = QFormat(i, f)
    i, f = parse_format(data)
    W = got.get("weights") or QFormat(i, f)
    A = got.get("acts") or QFormat(i, f)
    G = got.get("grads") or QFormat(2, GRAD_FRAC)
    fp = max(0, G.frac_bits + A.frac_bits - guard(BLOCK, G.bits, A.bits))
    V = got.get("adam_v") or QFormat(32 - V_FRAC, V_FRAC)
    fv = V_FRAC if V.block else V.frac_bits
    fm = min(fp, R_FRAC + fv // 2)  # so that Adam's e >= 0 (rule 5)
    M = got.get("adam_m") or QFormat(32 - fm, fm)
    # 9.6: a block-scaled class stands for the 32-bit default: m with Fm = min(Fp0, 13 + 14)
    # (Fp0 the default of pgrads), v in q4.28
    mw = QFormat(32 - min(fp, R_FRAC + V_FRAC // 2), min(fp, R_FRAC + V_FRAC // 2)) \
        if M.block else M
    vw = QFormat(32 - V_FRAC, V_FRAC) if V.block else V
    return [W, A, got.get("logits") or QFormat(A.int_bits + LOGIT_EXTRA_BITS, A.frac_bits), G,
            got.get("pgrads") or QFormat(32 - fp, fp), M, V, got.get("master"), mw, vw]


def canonical(formats):
    """The canonical SPEC of resolved formats (3.2)."""
    spec = ""
    for i in range(len(CLASSES)):
        f = formats[i]
        spec += ("," if i else "") + CLASSES[i] + "=" + (f.name if f else "none")
    return spec


class Policy:
    """The resolved policy (section 3) and the numbers derived from it.

    data: the run's `format` qI.F (a name, or (I, F)); rounding: 'nearest' | 'floor' |
    'stochastic' (9.5); master: None or (I, Fm); lr_q30 = round(lr * 2**30), computed on
    the host (a 32-bit float on the device could round it otherwise); policy: the
    config's `policy` object (class -> format), or None. Raises PolicyError.
    formats: [W, A, L, G, P, M, V, S] of 3.1 (S None without master weights).
    """

    def __init__(self, data, rounding="nearest", master=None, lr_q30=10737418, policy=None):
        if not isinstance(data, str):
            data = f"q{data[0]}.{data[1]}"
        policy = dict(policy or {})
        if master and "master" not in policy:
            policy["master"] = f"q{master[0]}.{master[1]}"
        self.formats = fs = resolve(data, policy)
        self.rounding = rounding
        self.mode = ROUNDINGS.index(rounding)
        self.lr_q30 = lr_q30
        check(None, lr_q30, rounding, fs)
        W, A, L, G, P, M, V, S = fs[:8]
        self.data, self.logits, self.master = A, L, S  # the pre-policy firmware's names
        self.weight_store = S or W
        self.alpha_frac = 45 - bitlen(lr_q30)  # Falpha

    def numbers(self):
        """What the kernels take, every shift of 3.6, in the tuples firmware/model.py's
        Model takes (Model.__init__ lists them): (nb, fwd, bwd, opt, schedule, wide,
        blocks); blocks: the mantissa bits and block size of adam_m and adam_v, 0 for a
        plain class (9.6)."""
        W, A, L, G, P, Mb, Vb, S, M, V = self.formats
        store = self.weight_store
        fw, fa, fg, fp = W.frac_bits, A.frac_bits, G.frac_bits, P.frac_bits
        fh = V.frac_bits // 2  # Fh: sqrt(v)'s fractional bits
        g = guard(16, A.bits, A.bits)  # rmsnorm's mean square: rounded up to even
        g += g & 1
        fm = 2 * fa - g + 4  # the +4 is the mean's /16
        eps = max(1, ((1 << fm) + 50000) // 100000)  # 1e-5 half up, at least one step
        return (
            (W.nb, A.nb, G.nb, Mb.nb, Vb.nb, store.nb),
            # forward: Fl, A's limits, linear into A and into L, rmsnorm, attention
            # (scores: the +1 is the 1/sqrt(4)), the embedding's shift
            (L.frac_bits, A.lo, A.hi, fw, fw + fa - L.frac_bits, g, fm, eps,
             2 * fa + 1 - L.frac_bits, L.lo, L.hi, PROB_FRAC, fw - fa),
            # backward: rmsnorm's c (the mean adds 4 bits), attention's dp, dv and pd,
            # dq and dk, the embedding's, linear's dx and dW, G's and P's limits,
            # cross-entropy's, Fa
            (fa + 4, fa, PROB_FRAC, fa, fg - fp, fw, fg + fa - fp, G.lo, G.hi, P.lo, P.hi,
             PROB_FRAC - fg, fa),
            # Adam: g into m, g squared, the ratio's e, the update's u; the store's and
            # m's and v's limits; the forward view of master weights
            (fp - M.frac_bits, fp - fh, R_FRAC + fh - M.frac_bits,
             self.alpha_frac + R_FRAC - store.frac_bits, self.mode, store.lo, store.hi,
             min(M.hi, _KERNEL_RANGE - 1), V.hi, S.frac_bits - fw if S else 0, W.lo, W.hi),
            (self.lr_q30, self.alpha_frac, self.rounding == "stochastic"),
            1 if S else 0,
            (Mb.bits if Mb is not M else 0, Mb.block if Mb is not M else 0,
             Vb.bits if Vb is not V else 0, Vb.block if Vb is not V else 0),
        )

    def init_args(self):
        """(sh, lo, hi, nb) of prng.init_tensor for the weight store."""
        s = self.weight_store
        return 28 - s.frac_bits, s.lo, s.hi, s.nb


def check(policy, lr_q30, rounding="nearest", formats=None):
    """The validity rule of 3.4, in its order. For conformance: 0 if `policy` (class ->
    format; the others from q4.12) is valid with lr_q30 and the update rounding, else
    the number of the first rule it breaks. Given resolved formats instead (Policy):
    raises PolicyError for the first condition that fails."""
    if formats is None:
        try:
            check(None, lr_q30, rounding, resolve("q4.12", policy))
        except PolicyError as e:
            return e.args[0]
        return 0
    widths = ((4, 16), (4, 16), (4, 24), (4, 16), (8, 32), (8, 32), (8, 32), (8, 32))
    for i in range(len(CLASSES)):
        f = formats[i]
        if f is None:
            continue
        if f.block:  # only adam_m and adam_v parse as one
            if not 4 <= f.bits <= 16:
                raise PolicyError(1, 2, CLASSES[i], f.name, f.bits)
            if not 8 <= f.block <= 1024:
                raise PolicyError(1, 3, CLASSES[i], f.name, f.block)
            continue
        low, high = widths[i]
        if f.int_bits < 1 or f.frac_bits < 0:
            raise PolicyError(1, 4, CLASSES[i], f.name)
        if not low <= f.bits <= high:
            raise PolicyError(1, 5, CLASSES[i], f.name, f.bits, low, high)
    W, A, L, G, P, _, _, S, M, V = formats
    fw, fa, fl = W.frac_bits, A.frac_bits, L.frac_bits
    if fl > fw + fa:
        raise PolicyError(2, 6, "logits", L.name, fl, fw + fa)
    if fl > 2 * fa + 1:
        raise PolicyError(2, 7, "logits", L.name, fl, 2 * fa + 1)
    if fl > 16:
        raise PolicyError(2, 8, "logits", L.name, fl)
    if P.frac_bits > G.frac_bits + fa:
        raise PolicyError(3, 9, "pgrads", P.name, P.frac_bits, G.frac_bits + fa)
    fv = V.frac_bits
    if fv & 1 or fv // 2 > 15:
        raise PolicyError(4, 10, "adam_v", V.name, fv)
    if 13 + fv // 2 - M.frac_bits < 0:
        raise PolicyError(5, 11, "adam_m", M.name, M.frac_bits, 13 + fv // 2)
    if S is not None and S.frac_bits < fw:
        raise PolicyError(6, 12, "master", S.name, S.frac_bits, fw)
    store = S or W
    u = 45 - bitlen(lr_q30) + R_FRAC - store.frac_bits
    if not 0 < lr_q30 < (1 << 30) or not 0 <= u <= 30:
        raise PolicyError(7, 13, "master" if S else "weights", store.name, u, lr_q30)
    if rounding == "kahan" and S is not None:
        raise PolicyError(7, 14, "master", S.name)

