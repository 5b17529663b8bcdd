"""Golden cases constructed on the thresholds of docs/arithmetic.md, not hoped for.

    exp_neg    exhaustive: every z of the domain [-(16 << F) - 1, 0] when F <= 12;
               when F > 12 every z12 with the z that round to it at both ends (the
               tie, which rounds up, and the last value below the next tie)
    softmax    rows [0, d] for every d above (S = 2**15 + exp_neg(d) is an output:
               softmax's inlined exp, checked everywhere), and rows on the
               normalisation's rounding ties: p = ((e << 15) + (S >> 1)) // S
               changes with the half exactly when (e << 15) mod S is S - (S >> 1)
               (the half minus one flips it) or S - (S >> 1) - 1 (the half plus one
               flips it); found by search over rows [0]*a + [d]*b, with rows just
               beside the ties
The exhaustive exp_neg covers every (idx, rem) of the interpolation that a z12
reaches, so its rounding constant (2**14) is tested at every reachable tie.
Arrays are split into chunks the 96 KB device holds at once.
"""

import numpy as np

from qgpt import int_ops as ops
from qgpt.conformance.inputs import Case, _i

CHUNK = 512  # values per exp_neg case: 2 KB in, 2 KB out (a fragmented 96 KB heap)
TIE_ROWS = 12  # softmax rows per kind of tie and format


def exp_domain(F):
    """Every exp_neg input that matters for F fractional bits: all z of the domain,
    or (F > 12) each z12 with the two z at the ends of its rounding interval."""
    cut = 16 << F
    if F <= 12:
        return np.arange(-cut - 1, 1, dtype=np.int64)
    s = F - 12
    half = 1 << (s - 1)
    z12 = np.arange(-(16 << 12), 1, dtype=np.int64)
    ends = np.concatenate([(z12 << s) - half, (z12 << s) + half - 1, z12 << s])
    ends = np.concatenate([ends, [-cut - 1, -cut, -cut + 1]])
    return np.unique(ends[ends <= 0])


def cases_exp_exhaustive(fmt, policy):
    F = policy.data.frac_bits
    z = exp_domain(F)
    e = ops.exp_neg(z, F)
    out = []
    for k in range(0, len(z), CHUNK):
        part = slice(k, k + CHUNK)
        out.append(Case("exp_neg", fmt, f"every z12, {z[part][0]}..{z[part][-1]}", None,
                        {"frac": F}, {"z": _i(z[part])}, {"e": _i(e[part])}))
    return out


def cases_softmax_exhaustive(fmt, policy):
    """Rows [0, d] for every d of exp_domain: S = 2**15 + exp_neg(d) is an output, so
    softmax's own (inlined) exp is checked at every input, as exp_neg's is."""
    F = policy.data.frac_bits
    d = exp_domain(F)
    d = d[d > -(1 << 30)]
    out = []
    rows_per_case = CHUNK // 2
    for k in range(0, len(d), rows_per_case):
        z = np.stack([np.zeros_like(d[k : k + rows_per_case]), d[k : k + rows_per_case]], 1)
        p = ops.softmax(z, F)
        s = ops.exp_neg(z - z.max(axis=1, keepdims=True), F).sum(axis=1)
        out.append(Case("softmax", fmt, f"[0, d], every d of exp_neg, from {z[0, 1]}", None,
                        {"rows": len(z), "n": 2, "frac": F}, {"z": _i(z)},
                        {"p": _i(p), "S": _i(s)}))
    return out


def softmax_ties(F, limit=TIE_ROWS):
    """Rows [0]*a + [d]*b whose normalisation sits on a rounding tie: {kind: [row]},
    kinds "half-1 flips" (remainder S - h), "half+1 flips" (remainder S - h - 1),
    and "beside a tie" (remainder S - h + 1: neither flips)."""
    d = np.arange(-(16 << F), 0, dtype=np.int64)
    e1 = ops.exp_neg(d, F)
    found = {"half-1 flips": [], "half+1 flips": [], "beside a tie": []}
    parity = {}  # (kind, S odd) -> rows: both parities, as (S + 1) >> 1 differs for odd S
    for n in (2, 3, 5, 16, 27):
        for a in sorted({1, 2, n // 2, n - 1}):
            b = n - a
            if a < 1 or b < 1:
                continue
            S = a * 32768 + b * e1
            h = S >> 1
            for e in (np.full_like(S, 32768), e1):
                r = (e << 15) % S
                for kind, want in (("half-1 flips", S - h), ("half+1 flips", S - h - 1),
                                   ("beside a tie", S - h + 1)):
                    for j in np.flatnonzero(r == want)[:limit]:
                        rows = parity.setdefault((kind, int(S[j]) & 1), [])
                        if len(rows) < limit // 2:
                            rows.append([0] * a + [int(d[j])] * b)
    for (kind, _), rows in sorted(parity.items()):
        found[kind] += rows
    return found


def cases_softmax_ties(fmt, policy):
    F, L = policy.data.frac_bits, policy.logits
    out = []
    for kind, rows in softmax_ties(F).items():
        for n in sorted({len(r) for r in rows}):
            same = [r for r in rows if len(r) == n]
            z = np.array(same, dtype=np.int64)
            shift = L.hi - 1 if kind == "half-1 flips" else 0  # also away from zero
            z = np.clip(z + shift, L.lo, L.hi)
            p = ops.softmax(z, F)
            s = ops.exp_neg(z - z.max(axis=1, keepdims=True), F).sum(axis=1)
            out.append(Case("softmax", fmt, f"normalisation tie: {kind}, n={n}", None,
                            {"rows": len(z), "n": n, "frac": F}, {"z": _i(z)},
                            {"p": _i(p), "S": _i(s)}))
    return out


def next_token_golden(logits, inv_t, u30, F):
    """qgpt.int_model.IntModel.next_token on given logits rows (one token per row)."""
    z = (logits * inv_t[:, None] + 128) >> 8
    probs = ops.softmax(z, F)
    cum = np.cumsum(probs, axis=1)
    u = (u30 >> 15)[:, None]
    hit = cum > u
    return np.where(hit.any(axis=1), hit.argmax(axis=1), probs.argmax(axis=1)), cum


def cases_next_token(fmt, policy, rng):
    """Sampling's choice (section 10) with u exactly at, one below and one above a
    cumulative probability, u beyond the total (the first maximum is taken), two
    equal maxima, and temperatures 0.01 to 100."""
    F, L = policy.data.frac_bits, policy.logits
    V = 27
    rows, inv_ts, u30s = [], [], []
    for inv_t in (25600, 512, 256, 3):  # temperature 0.01, 0.5, 1, about 85
        base = np.clip(np.round(rng.normal(0, 2.0, (4, V)) * 2.0**F), L.lo, L.hi)
        base = base.astype(np.int64) >> 4 if inv_t == 25600 else base.astype(np.int64)
        base[3, 5] = base[3, 9] = base[3].max() + 1  # two equal maxima
        _, cum = next_token_golden(base, np.full(4, inv_t), np.zeros(4, dtype=np.int64), F)
        for r in range(4):
            j = int(rng.integers(0, V - 1))
            for u in (cum[r, j] - 1, cum[r, j], cum[r, j] + 1, cum[r, -1], 32767):
                u = int(min(max(u, 0), 32767))
                rows.append(base[r])
                inv_ts.append(inv_t)
                u30s.append((u << 15) + int(rng.integers(0, 1 << 15)))
    # the tempering's rounding, (l * inv_t + 128) >> 8, on its tie (remainder 128) and
    # one below (127): one logit moved onto it, u at its cumulative probability
    for inv_t, rest in ((3, 128), (3, 127), (5, 128), (5, 127)):
        base = np.clip(np.round(rng.normal(0, 2.0, (4, V)) * 2.0**F), L.lo, L.hi)
        base = base.astype(np.int64)
        for r in range(4):
            j = int(rng.integers(0, V - 1))
            step = next(k for k in range(256) if (k * inv_t) % 256 == rest)
            base[r, j] = base[r, j] - base[r, j] % 256 + step  # l * inv_t = rest (mod 256)
        base = np.clip(base, L.lo, L.hi)
        _, cum = next_token_golden(base, np.full(4, inv_t), np.zeros(4, dtype=np.int64), F)
        for r in range(4):
            for j in range(V):
                if (base[r, j] * inv_t) % 256 == rest:
                    for u in (cum[r, j] - 1, cum[r, j]):
                        rows.append(base[r])
                        inv_ts.append(inv_t)
                        u30s.append(int(min(max(u, 0), 32767)) << 15)
    # the first maximum when no cumulative probability exceeds u: seven equal maxima at
    # 0..6 get 4681 each (32767 in all), so u = 32767 is beyond the total
    row = np.full(V, L.lo // 2, dtype=np.int64)
    row[:7] = min(L.hi, 1 << F)
    for inv_t in (25600, 256):
        rows.append(row)
        inv_ts.append(inv_t)
        u30s.append((1 << 30) - 1)
    logits, inv_t, u30 = np.array(rows), np.array(inv_ts), np.array(u30s)
    tok, _ = next_token_golden(logits, inv_t, u30, F)
    return [Case("next_token", fmt, "u at, below and above a cumulative probability", None,
                 {"rows": len(logits), "n": V, "frac": F},
                 {"logits": _i(logits), "inv_t": _i(inv_t), "u30": _i(u30)},
                 {"tok": _i(tok)})]


def boundary_cases(fmt, policy, rng, exhaustive=True):  # next_token's: see build_cases
    """exhaustive=False leaves out the exhaustive exp domains (the int32 target: their
    extremes are among the edge cases, and CPython would take minutes)."""
    full = cases_exp_exhaustive(fmt, policy) + cases_softmax_exhaustive(fmt, policy)
    return ((full if exhaustive else []) + cases_softmax_ties(fmt, policy))
