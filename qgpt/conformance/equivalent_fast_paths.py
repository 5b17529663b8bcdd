"""The equivalent mutants of the kernels issue 15's speed work wrote (dot_rows, the
linear fast paths, abs_max, adam_update's isqrt by a parabola), each with a one-line
argument: equivalent.py merges them into EQUIVALENT (its docstring says how a key
names a mutant). Also the arguments both tables use.
"""

# arguments equivalent.py uses too
_SH_ZERO = "sh > -1 differs from sh > 0 only at sh = 0, where the shift is 0 either way"
_AT_LIMIT = "a value equal to the limit is stored as the limit either way"
_DEAD_VALUE = "the value is only used in the branch the test before it takes instead"

# dot_rows's callers (kernels.py): linear's rows and columns; b with 1 or 2 bytes a word.
# The fast paths' bound: partial sums <= L1 * max <= FIT = 2**30 - 1. L1 <= 64 * 2**15 =
# 2**21 (16 * 2**15 for dW), so the bound binds only for max >= 2**9; the rounding's
# half is at most 2**26 (dW's shift 27).
_OVERESTIMATE = ("gives u + 2**16 for u >= 0 and 2**16 - |u| for u < 0, both >= |u|: the "
                 "bound only grows, which sends rows from the fast path to the exact one")
_MAX_8BIT = ("abs_max of 8-bit words is never used: the fast paths that read max |W| take "
             "16-bit words only (bw == 2)")
_SCRATCH = ("dot_rows sets hh and ll to 0 before each sum: the value "
            "passed is never read")
# the first lines of dot_rows's calls (kernels.py)
_DOT_ROWS_CALLS = (
    ("linear_backward", "dot_rows(0, 0, yb, (r - r0) * n_in, n_in, yw, dy, r * (d_row >> 1), "
     "d_row >> 1,"),
    ("linear_forward", "dot_rows(0, 0, y, t * n_out, n_out, by, x, t * n_in, n_in, 1, ba, w, 0, "
     "n_in, 1,"),
)
_ABS_32 = ("every caller passes 1- or 2-byte words (weights, x): the 32-bit load is never "
           "taken")
_WMAX_SCAN = "if t0 == 0 and bw == 2 and (start < T or wm[_WTE] == 0):"
_WMAX_RESCAN = ("_RESCAN = const(16)  # training steps between two scans of max |W| "
                "(forward_position)")
_WMAX_DRIFT = "wm[j] += ((alpha << 15) >> (self.opt[3] + self.opt[9])) + 3"
_SCAN_WHEN = ("only moves the scans of max |W|: between them train_step raises the bounds "
              "by Adam's largest move, and without a first scan they stay 0 (no fast path): "
              "every bound stays >= max |W|, which only chooses the path")
_DRIFT_LARGER = ("a larger rise (alpha << 16, + 4, u - sh_view with sh_view >= 0): the bound "
                 "stays >= max |W| and only sends rows to the exact path")
_TO_EXACT = ("only sends rows from the fast path to the exact one (dot_rows's int32 pair), "
             "which gives the same integers")
_FIT_2_30 = ("the bound 2**30 instead of 2**30 - 1: |S| <= 2**30 plus the half (<= 2**26) "
             "stays below 2**31, the fast path stays exact")
# adam_update's isqrt: a parabola, a Newton step, then `while root * root > vs: root -= 1` and
# `while (root + 1) * (root + 1) <= vs: root += 1`, which end at floor(sqrt(vs)) from any
# start in [1, 46340] (every product within int32). Each such mutant
# was emulated with int32 checks on every v < 2**16, k*k - 1 .. k*k + 1, each chord's and
# normalization step's ends and 20000 random v in [0, 2**30].
_CHORD_START = ("only moves the start of Newton's step (normalization or parabola); it stays "
                "in [1, 46340], from where the exact corrections end at floor(sqrt(v))")
_UNSPLIT_NARROWER = ("fewer policies take the unsplit mul15 (a narrower test): the others "
                     "take the general path, the same integers (both 9.1-9.2's; the unsplit "
                     "one proven equal within its bounds)")
# adam_update's isqrt (round 4): v >= 2**16 normalized, estimated and given one Newton step,
# then the loop down alone; below, the estimate and the loops down and up. Mutants of the
# normalization, the parabola or the threshold between the two only move where the loops
# start, and the int32 level passes them (every product below 2**31 on the edge cases).
_ISQRT_START_2 = ("only moves where isqrt's corrections start: above the threshold one integer "
                  "Newton step from any positive start is at least floor(sqrt(v)) (AM-GM, "
                  "floors included) and the loop down ends on it; below it the loops down and "
                  "up end on it from any start")
_ADAM_TO_GENERAL = ("only sends parameters from a fast path to the general one (the store, "
                    "the ratio's clamp test first), which gives the same integers")
_ADAM_BOUND_ONE_OFF = ("moves the unsplit test's bound on m or g by one (m, g = 2**18, "
                       "2**18 + 1 or -2**18 - 1 admitted): the products stay below 2**31 "
                       "(x 4915; gs = rnd(g, sh_s >= 7) is still within +-2**11: at -2**18 - 1 "
                       "the half rounds it to -2**(18 - sh_s)), m' within hm >= 2**19 - 1 and "
                       "v' as before: no saturation, the same integers")
_ADAM_ROUNDING_EVEN = ("the two roundings differ only where the term before the shift is "
                       "1 mod 2**15 away from a multiple: vi * 328 and gs * gs * 328 are even "
                       "(and gs * gs * 328 is never 2**14 mod 2**15: a square has an even "
                       "number of factors 2)")

_ADAM_UNSPLIT_TEST = "if not ((mi + 262144) | (root + 262144) | (vi >> 3) | unsplit) >> 19:"
_ADAM_V_UNSPLIT = ("vi = vi + ((16384 - vi * _ADAM_C2) >> 15) + ((root * root * _ADAM_C2 + 16384) "
                   ">> 15)")
FAST_PATHS = {
    # rmsnorm's calls: y's index, strides (0, 1, 2) and by = -1 store nothing; the row and
    # column strides (4 .. 7) and a second row or column change no term
    ("dot_rows", "lim = 1 << (14 + sh) if sh < 16 else 0", "0", "-1", 0): _DEAD_VALUE,
    ("dot_rows", "lim = 1 << (14 + sh) if sh < 16 else 0", "<", "<=", 2): _DEAD_VALUE,
    ("embedding_backward", "rs = sh if sh > 0 else 0", ">", ">=", 0): _SH_ZERO,
    ("embedding_backward", "ls = 0 - sh if sh < 0 else 0", "<", "<=", 0):
        "at sh = 0, 0 - sh is 0, the else value",
    # abs_max: an overestimate of the bound only sends rows to the exact path
    ("adam_update", "half_uk = 1 << (uk - 1) if uk > 0 else 0", "0", "-1", 0):
        "kahan has no master weights, so uk = u - 8 >= 5; other modes do not read half_uk",
    ("adam_update", "gm = 0 - big", "0", "-1", 0):
        "gm only enters mul15(gm, 4915): -2**30 - 1 and -2**30 give the same rounded product "
        "(they differ by 4915 / 2**15 < 1/2, away from a tie)",
    ("adam_update", "elif gs < gs_lo:", "<", "<=", 0):
        "at gs = gs_lo, gs << gs_ls is -32768 (32768 >> gs_ls is exact, gs_ls <= 15): the value "
        "the saturation stores",
    ("adam_update", "if mi < 0 - hm:", "<", "<=", 0): _AT_LIMIT,
    **{("adam_update", line, tok, rep, k): _CHORD_START for line, tok, rep, k in (
        ("s2 += 1", "1", "0", 0),)},
    ("linear_backward", "one = 1", "1", "0", 0):
        "one = 0: fit = -1; no fast path runs (L1 <= -1 // max never holds): " + _TO_EXACT,
    ("linear_backward", "fit = (one << 30) - 1", "<<", ">>", 0):
        "fit = -1: no fast path runs (L1 <= -1 // max never holds): " + _TO_EXACT,
    # dW added (add_dw: conformance's cases) or stored (the model): y's width for dot_rows
    **{("linear_backward", "yw = -4 if add_dw else 4  # int32, added to (or stored)", "4",
        rep, k): "dot_rows adds to y for any by < 0 and stores int32 for any by other than 1, 2 "
       "and below 0: -3 and -5 add as -4 does, 3 and 5 store as 4 does"
       for rep in ("3", "5") for k in (0, 1)},
    # the fast path's eight columns: n_in is 16 or 64 (params), both multiples of 8 and 16
    **{("linear_backward", "l1_max = fit // big if big > 0 and not n_in & 7 else -1", tok,
        rep, k): why for tok, rep, k, why in (
        ("7", "8", 0, "n_in & 8 is 0 for n_in = 16 and 64, as n_in & 7: the same test"),
        ("7", "6", 0, "n_in & 6 is 0 for n_in = 16 and 64, as n_in & 7: the same test"),
        ("&", "|", 0, "n_in | 7 is never 0: " + _TO_EXACT))},
    # beyond the every-4 sample, each emulated as _CHORD_START says
    **{("adam_update", line, tok, rep, k): _CHORD_START for line, tok, rep, k in (
        ("s2 += 1", "1", "2", 0),
    )},
    ("adam_update", "root -= 1", "1", "2", 0): "below 2**16 the loop down may step one past "
        "floor(sqrt(vs)); the loop up then adds it back (emulated; after Newton's step, where "
        "no loop up follows, the same mutant is killed)",
    ("adam_update", "c = 0 - _KAHAN_HALF", "-", "+", 0):
        "c = 128 and c = -128 are the same byte 0x80 in the int8 comp array (pc is a ptr8, "
        "read back sign-extended), and c is not read again in the call",
    ("forward_position", "for j in range(_LM_HEAD, _FC2 + 1):", "+", "-", 0):
        "fc1's and fc2's max |W| then stay 0 (Model sets wmax to zeros): their linear "
        "kernels always take the exact path, which gives the same integers",
    # beyond the every-4 sample: dot_rows and abs_max judged one by one
    ("dot_rows", "lim = 1 << (14 + sh) if sh < 16 else 0", "16", "17", 0): _DEAD_VALUE,
    ("dot_rows", "lim = 1 << (14 + sh) if sh < 16 else 0", "0", "1", 0): _DEAD_VALUE,
    **{("dot_rows", "q = 0", "0", rep, 0): "every call has rows, cols >= 1: q is set before "
       "it is stored or returned" for rep in ("1", "-1")},
    ("dot_rows", "if q < lo:", "<", "<=", 0): _AT_LIMIT,
    ("dot_rows", "if q > hi:", ">", ">=", 0): _AT_LIMIT,
    ("narrow", "bad += 1", "1", "0", 0):
        "the count only refuses a checkpoint with values outside its policy (restore.py), "
        "which the host refuses too (checkpoint.check_run_state) and never writes",
    ("block_encode", "big = 0", "0", "1", 0):
        "big only sets the block's shift: for a block of zeros 1 and 0 both give kj = 0 "
        "(tbits >= 3)",
    ("adam_update", "if d < 0 and w > hi + d:", "0", "1", 0):
        "for d = 0 the test w > hi never holds: w is a value of the store's format",
    ("linear_forward", "one = 1", "1", "0", 0):
        "one = 0 makes the bound -1 // wmax = -1: " + _TO_EXACT,
    ("linear_backward", "fit = (one << 30) - 1", "1", "0", 0): _FIT_2_30,
    ("linear_backward", "fit = (one << 30) - 1", "30", "29", 0): _TO_EXACT,
    ("linear_backward", "fit = (one << 30) - 1", "1", "2", 0): _TO_EXACT,
    **{("dot_rows", "if by < 0:", tok, rep, 0): "y's width by is 1, 2, 4 or -4 (the adding "
       "int32 y), never 0 or -1: by < 0, by <= 0, by < 1 and by < -1 agree" for tok, rep in
       (("<", "<="), ("0", "1"), ("0", "-1"))},
    # dot_rows's first two arguments are scratch registers (hh, ll): set before read
    **{(function, line, "0", rep, k): _SCRATCH for function, line in _DOT_ROWS_CALLS
       for k in (0, 1) for rep in ("1", "-1")},
    # found by `--modules kernels --every 8` on main after the Adam work (round 2,
    # session 3): 11 survivors, each argued here
    ("adam_update", "m_ls = 0 - sh_m if sh_m < 0 else 0", "0", "1", 2):
        "m_ls (and m_hi, m_lo from it) is read only where sh_m < 0, where the else value "
        "is not taken",
    ("adam_update", "gs_rs = sh_s if sh_s > 0 else 0", "0", "-1", 0): _SH_ZERO,
    **{("adam_update", line, tok, rep, k): _UNSPLIT_NARROWER for line, tok, rep, k in (
        ("unsplit = 0 if (bv == 4 and sh_m == 0 and sh_s >= 7 and hm >= 1 << 18",
         "4", "3", 0),
        ("unsplit = 0 if (bv == 4 and sh_m == 0 and sh_s >= 7 and hm >= 1 << 18",
         "7", "8", 0),
        ("and hv >= (1 << 22) - 1) else big", ">=", ">", 0),
        ("and hv >= (1 << 22) - 1) else big", "1", "0", 1))},
    ("adam_update", _ADAM_UNSPLIT_TEST, "262144", "262145", 0):
        "admits m = -2**18 - 1 and sends m = 2**18 - 1 to the general path: at -2**18 - 1 "
        "the products (x 4915) stay below 2**31, x + ((2**14 - x c) >> 15) is mul15(x, "
        "2**15 - c) for any such x, and m' >= -2**18 - 1 is within [-hm, hm] (hm >= 2**18 "
        "is 2**(b-1) - 1 >= 2**19 - 1 or 2**30): no saturation, the same integers",
    # adam_update after round 4: its new mutants judged with mutants.Judge (every level),
    # these survived
    **{("adam_update", line, tok, rep, k): _ISQRT_START_2 for line, tok, rep, k in (
        ("if root >= 1 << 16:", ">=", ">", 0),
        ("if root >= 1 << 16:", "1", "2", 0),
        ("if root >= 1 << 16:", "1", "0", 0),
        ("if root >= 1 << 16:", "<<", ">>", 0),
        ("if root >= 1 << 16:", "16", "17", 0),
        ("if root >= 1 << 16:", "16", "15", 0),
        ("root >>= 10", "10", "11", 0),
        ("root >>= 10", "10", "9", 0),
        ("s2 = 5", "5", "6", 0),
        ("s2 = 5", "5", "4", 0),
        ("while root >= 1 << 8:", ">=", ">", 0),
        ("while root >= 1 << 8:", "1", "2", 0),
        ("while root >= 1 << 8:", "8", "7", 0),
        ("while root >= 1 << 8:", "8", "9", 0),
        ("root = ((((root * (1003 - root)) >> 10) + 71) << s2) >> 4", "1003", "1004", 0),
        ("root = ((((root * (1003 - root)) >> 10) + 71) << s2) >> 4", "1003", "1002", 0),
        ("root = ((((root * (1003 - root)) >> 10) + 71) << s2) >> 4", "-", "+", 0),
        ("root = ((((root * (1003 - root)) >> 10) + 71) << s2) >> 4", "10", "11", 1),
        ("root = ((((root * (1003 - root)) >> 10) + 71) << s2) >> 4", "71", "72", 0),
        ("root = ((((root * (1003 - root)) >> 10) + 71) << s2) >> 4", "71", "70", 0),
        ("root = ((((root * (1003 - root)) >> 10) + 71) << s2) >> 4", "4", "5", 0),
        ("root = ((((root * (1003 - root)) >> 10) + 71) << s2) >> 4", "4", "3", 0),
        ("if root >= 1 << 12:", ">=", ">", 0),
        ("if root >= 1 << 12:", "1", "2", 0),
        ("if root >= 1 << 12:", "1", "0", 0),
        ("if root >= 1 << 12:", "<<", ">>", 0),
        ("if root >= 1 << 12:", "12", "13", 0),
        ("if root >= 1 << 12:", "12", "11", 0),
        ("if root >= 1 << 14:", ">=", ">", 0),
        ("if root >= 1 << 14:", "1", "2", 0),
        ("if root >= 1 << 14:", "1", "0", 0),
        ("root = ((((root * (1003 - root)) >> 10) + 71) << s2) >> 4", "10", "9", 1),
        ("if root >= 1 << 14:", "<<", ">>", 0),
        ("if root >= 1 << 14:", "14", "15", 0),
        ("if root >= 1 << 14:", "14", "13", 0),
        ("root >>= 8", "8", "7", 0),
        ("root >>= 8", "8", "9", 0),
        ("rs = 0", "0", "1", 0),
        ("root >>= 6", "6", "7", 0),
        ("rs = 1", "1", "2", 0),
        ("root >>= 6", "6", "5", 0),
        ("elif root >= 1 << 8:", ">=", ">", 0),
        ("rs = 1", "1", "0", 0),
        ("elif root >= 1 << 8:", "1", "0", 0),
        ("elif root >= 1 << 8:", "1", "2", 0),
        ("elif root >= 1 << 8:", "8", "9", 0),
        ("elif root >= 1 << 8:", "<<", ">>", 0),
        ("if root >= 1 << 10:", ">=", ">", 0),
        ("elif root >= 1 << 8:", "8", "7", 0),
        ("if root >= 1 << 10:", "1", "0", 0),
        ("if root >= 1 << 10:", "1", "2", 0),
        ("if root >= 1 << 10:", "10", "11", 0),
        ("if root >= 1 << 10:", "<<", ">>", 0),
        ("root >>= 4", "4", "3", 0),
        ("if root >= 1 << 10:", "10", "9", 0),
        ("rs = 2", "2", "1", 0),
        ("root >>= 4", "4", "5", 0),
        ("root >>= 2", "2", "3", 0),
        ("rs = 2", "2", "3", 0),
        ("rs = 3", "3", "4", 0),
        ("root >>= 2", "2", "1", 0),
        ("rs = 4", "4", "5", 0),
        ("rs = 3", "3", "2", 0),
        ("root = (((root * (1003 - root)) >> 10) + 71) >> rs", "1003", "1004", 0),
        ("rs = 4", "4", "3", 0),
        ("root = (((root * (1003 - root)) >> 10) + 71) >> rs", "-", "+", 0),
        ("root = (((root * (1003 - root)) >> 10) + 71) >> rs", "1003", "1002", 0),
        ("root = (((root * (1003 - root)) >> 10) + 71) >> rs", "10", "11", 1),
        ("root = (((root * (1003 - root)) >> 10) + 71) >> rs", "10", "9", 1),
        ("root = (((root * (1003 - root)) >> 10) + 71) >> rs", "71", "70", 0),
        ("root = (((root * (1003 - root)) >> 10) + 71) >> rs", "71", "72", 0),
        ("root = (((root * (1003 - root)) >> 10) + 71) >> rs", ">>", "<<", 1),
    )},
    **{("adam_update", line, tok, rep, k): _ADAM_TO_GENERAL for line, tok, rep, k in (
        ("short = bs == 2 and mode <= _ROUND_FLOOR", "2", "3", 0),
        ("short = bs == 2 and mode <= _ROUND_FLOOR", "<=", "<", 0),
        ("a_lim = (big - (1 << 14)) >> e", "1", "2", 0),
        ("a_lim = (big - (1 << 14)) >> e", "14", "15", 0),
        ("if vi > a_lim:", ">", ">=", 0),
    )},
    ("adam_update", "if vi > _R_MAX:", ">", ">=", 0): _AT_LIMIT,
    ("adam_update", "vi = hi if vi > hi else lo", ">", ">=", 0):
        "the branch runs only for vi outside [lo, hi], where vi >= hi and vi > hi agree",
    **{("adam_update", _ADAM_UNSPLIT_TEST, tok, rep, k): _UNSPLIT_NARROWER for tok, rep, k in (
        ("3", "2", 0), ("19", "18", 0))},
    **{("adam_update", _ADAM_UNSPLIT_TEST, "262144", rep, k): _ADAM_BOUND_ONE_OFF
       for rep, k in (("262143", 0), ("262143", 1), ("262145", 1))},
    **{("adam_update", _ADAM_V_UNSPLIT, "16384", rep, k): _ADAM_ROUNDING_EVEN for rep, k in (
        ("16385", 0), ("16383", 1), ("16385", 1))},
    # model.py's max |W| bound between scans (issue 15): a bound that stays >= max |W| (or
    # 0: no fast path) only chooses between the fast and the exact path. Mutants that make
    # it smaller are not equivalent and not listed (the levels do not see them: the runs'
    # sums stay far below 2**31); tests/test_firmware_train.py's bound check kills most.
    **{("forward_position", _WMAX_SCAN, tok, rep, k): _SCAN_WHEN for tok, rep, k in (
        ("==", "!=", 0), ("0", "1", 1), ("0", "-1", 1), ("==", "!=", 1), ("2", "3", 0),
        ("2", "1", 0), ("<", "<=", 0), ("==", "!=", 2), ("0", "1", 2), ("0", "-1", 2))},
    **{("", _WMAX_RESCAN, "16", rep, 0): _SCAN_WHEN for rep in ("15", "17")},
    **{("train_step", "wm[_WTE] -= 1", tok, rep, 0): _SCAN_WHEN for tok, rep in (
        ("-=", "+="), ("1", "2"), ("1", "0"))},
    **{("train_step", _WMAX_DRIFT, tok, rep, k): _DRIFT_LARGER for tok, rep, k in (
        ("15", "16", 0), ("3", "4", 1), ("+", "-", 1))},
    # linear_forward's bound, two positions a call (x[t] and x[t + 1], each its L1)
    **{("linear_forward", line, tok, rep, k): why for line in (
        "xv = (ptr16(xa)[0] ^ 0x8000) - 0x8000",
        "xv = (ptr16(xa + e_off)[0] ^ 0x8000) - 0x8000")
       for tok, rep, k, why in (("-", "+", 0, _OVERESTIMATE),)},
    **{("linear_forward", f"{l1} += xv if xv >= 0 else 0 - xv", tok, rep, k): why
       for l1 in ("l1x", "l1z") for tok, rep, k, why in (
        ("0", "1", 0, "at xv = 0, 0 - xv is 0 either way"),
        (">=", ">", 0, "at xv = 0, 0 - xv is 0 either way"),
        ("0", "1", 1, "L1 larger by one per negative value: " + _TO_EXACT))},
    # (an L1 too small is no longer equivalent since the saturation is skipped where the
    # bound's rounded value lies inside [lo, hi]: linear_pair_cases.py kills it)
    **{("linear_forward", f"{l1} = 0", "0", "1", 0): "L1 one too large: " + _TO_EXACT
       for l1 in ("l1x", "l1z")},
    **{("linear_forward", "l1_max = ((one << 30) - 1) // wmax if bw == 2 and ba == 2 and wmax > 0 "
        "else -1", tok, rep, k): why for tok, rep, k, why in (
        ("<<", ">>", 0, "the bound becomes -1 // wmax = -1: " + _TO_EXACT),
        ("//", "%", 0, "fit % max < max, and L1 below it bounds |S| by max**2 < 2**30: the "
         "fast path only takes fewer rows, each exact"),
        ("1", "0", 1, _FIT_2_30), ("1", "2", 1, _TO_EXACT), ("30", "29", 0, _TO_EXACT),
        ("-", "+", 0, "the bound 2**30 + 1: |S| <= 2**30 + 1 plus the half (<= 2**26) stays "
         "below 2**31, the fast path stays exact"),
        ("0", "1", 1, "at max |W| = 1 " + _TO_EXACT), ("2", "3", 0, _TO_EXACT),
        ("2", "3", 1, _TO_EXACT),
        ("1", "2", 2, "l1_max is only tested for < 0 where it is not a bound: -2 as -1"))},
    **{("linear_forward", "if l1_max < 0 or l1x > l1_max or l1z > l1_max:  # the general loop: "
        "the int32 pair", tok, rep, k): why for tok, rep, k, why in (
        ("0", "1", 0, "l1_max < 1 adds l1_max = 0, where only all-zero rows took the fast path: "
         + _TO_EXACT),
        ("<", "<=", 0, "l1_max <= 0 adds l1_max = 0, where only all-zero rows took the fast "
         "path: " + _TO_EXACT),
        ("0", "-1", 0, "at l1_max = -1 the L1 loop does not run and l1x = 0 > -1: the exact "
         "path either way"),
        (">", ">=", 0, _TO_EXACT), (">", ">=", 1, _TO_EXACT))},
    # the saturation skipped where the bound's rounded value top lies inside [lo, hi]:
    # a mutant that only saturates more often stores the same values
    **{(fn, line, tok, rep, k): why for fn, line in (
        ("linear_forward", "top = ((l1x if l1x > l1z else l1z) * wmax + half) >> sh  # half "
         "<= 2**30: < 2**31"),
        ("linear_backward", "top = ((l1d if l1d > l1e else l1e) * big + half) >> s  # half "
         "<= 2**30: < 2**31"))
       for tok, rep, k, why in ((">", ">=", 0, "the larger of two L1 norms, or either when "
                                 "they are equal: the same value"),)},
    **{(fn, line, tok, rep, k): why for fn, line, cases in (
        ("linear_forward", "clamp = 1 if top > hi or 0 - top - 1 < lo else 0",
         (("0", "-1", 0), ("0", "1", 1), ("0", "-1", 1))),
        ("linear_backward", "clamp = 1 if top > hi or 0 - top - 1 < lo else 0",
         (("0", "-1", 0), ("0", "1", 1), ("0", "-1", 1))))
       for tok, rep, k in ((">", ">=", 0), ("<", "<=", 0), ("1", "2", 1), *cases)
       for why in ("the test only saturates more often (or always): saturating a value inside "
                   "[lo, hi] leaves it as it is",)},
    **{(fn, line, "1", "2", 0): "clamp is only tested for truth" for fn, line in (
        ("linear_forward", "clamp = 1 if top > hi or 0 - top - 1 < lo else 0"),
        ("linear_backward", "clamp = 1 if top > hi or 0 - top - 1 < lo else 0"))},
    # --- round 6 (session 9's mutation run of fwlin, fwsize, fwsize2): the linear kernels
    # and abs_max
    #
    # abs_max (an underestimate is not listed: linear_pair_cases.py's sums at the clamp's
    # edge kill it); its value is read only for 16-bit words
    ("abs_max", "return 0", "0", "1", 0):
        "abs_max's result for other widths is never read: model.py scans only where bw == 2, "
        "linear_backward passes 2, and both kernels ignore wmax unless bw == 2 (l1_max -1, big 0)",
    ("abs_max", "lo = 0x8000", "0x8000", "32769", 0):
        "lo starts at v = 1, not 0: it differs only when every v >= 1, where hi > 0x8000 takes "
        "the first branch either way (n = 0: both branches give 0); emulated on random words",
    ("abs_max", "if x < lo:", "<", "<=", 0): "a tie stores the same value",
    ("abs_max", "return hi - 0x8000 if hi + lo > 0x10000 else 0x8000 - lo", "-", "+", 0):
        "max v + 2**16 where the positive side decides: the bound only grows (at most 2**17 "
        "- 1, L1 * max still <= FIT), which sends rows to the exact path and saturates more",
    ("abs_max", "return hi - 0x8000 if hi + lo > 0x10000 else 0x8000 - lo", ">", ">=", 0):
        "at hi + lo = 0x10000 both branches give the same value (max v = -min v)",
    # linear_forward
    ("linear_forward", "l1_max = ((one << 30) - 1) // wmax if bw == 2 and ba == 2 and wmax > 0 "
     "else -1", "2", "1", 0):
        "16-bit W then takes the exact path; 8-bit W has wmax = 0 from every caller "
        "(conform_ops's abs_max of 1-byte words; model.py scans only 16-bit W and raises no "
        "bound of 0), so wmax > 0 fails: " + _TO_EXACT,
    ("linear_forward", "for t in range(t0, t1, 2):", "2", "1", 0):
        "each position then starts a pair of its own: y[t + 1] is computed again from the "
        "same x and W (y is never x: every caller passes distinct buffers), the same values",
    ("linear_forward", "o = ob if ob + 4 <= n_out else n_out - 4  # the block's first row",
     "4", "5", 0):
        "the tests differ only at ob + 4 = n_out, where n_out - 4 is ob itself (checked for "
        "n_out 4 .. 199)",
    # linear_backward
    ("linear_backward", "big = wmax if bw == 2 and bg == 2 else 0", "0", "-1", 0):
        "big is read only by l1_max's test big > 0 (else l1_max = -1 and every row takes "
        "the exact path): -1 as 0",
    ("linear_backward", "l1d = 0", "0", "1", 0):
        "L1 one too large (still <= l1_max where the fast path runs, L1 * big <= FIT): "
        "more rows to the exact path and more saturation, which leaves values in [lo, hi]",
    ("linear_backward", "v = (ptr16(at)[0] ^ 0x8000) - 0x8000", "-", "+", 0): _OVERESTIMATE,
    ("linear_backward", "l1d += v if v >= 0 else 0 - v", ">=", ">", 0):
        "at v = 0, 0 - v is 0 either way",
    ("linear_backward", "l1e += v if v >= 0 else 0 - v", "0", "1", 0):
        "v >= 1 differs only at v = 0, where 0 - v is 0 either way",
    ("linear_backward", "clamp = 1 if top > hi or 0 - top - 1 < lo else 0", "0", "1", 0):
        "the rounded sums lie in [-top, top] (rnd(-X, s) = -ceil((X - half) / 2**s) >= -top; "
        "emulated for s 0 .. 27): -top < lo is the test needed, -top - 1 < lo a wider one",
    ("linear_backward", "if u < lo:", "<", "<=", 0): _AT_LIMIT,
    # (end of the linear kernels' and abs_max's entries)
    #
    # --- round 6: attention, softmax, dot_rows, embedding, rmsnorm, narrow, block_encode
    #
    ("dot_rows", "sa = 0 if ba < 0 else 0x8000", "<", "<=", 0):
        "a's width ba is 1 or 2 in every call (linear_forward's ba, linear_backward's bg, "
        "attention_forward's ba), never 0: ba < 0 and ba <= 0 agree",
    ("embedding_backward", "elif w < lo:", "<", "<=", 0): _AT_LIMIT,
    ("rmsnorm_backward", "if c < glo:", "<", "<=", 0): _AT_LIMIT,
    ("rmsnorm_backward", "if v < glo:", "<", "<=", 0): _AT_LIMIT,
    ("attention_forward", "if x < lo_l:", "<", "<=", 0): _AT_LIMIT,
    # attention_forward's bound L1(q_h[t]) <= _L1_FIT = 2**15 - 1: an L1 up to 2**15 still
    # keeps S + half within int32 for every shift (half = 2**(sh_s - 1) <= 2**29, or at
    # sh_s = 31 +2**30 on 64 bits and (1 << 31) >> 1 = -2**30 on a 32-bit board: |S| <=
    # 2**30 gives S + half in [-2**31, 2**31)); L1 = 2**15 + 1 does not (S = -2**30 -
    # 2**15 + 1 at sh_s = 31 on a 32-bit board: attention_bound_cases's int32 edge group)
    ("", "_L1_FIT = const(32767)  # attention: L1 of a row of 16-bit words bounding |S| < "
     "2**30", "32767", "32768", 0):
        "the bound 2**15: |S| <= 2**30, and S + half within int32 for every shift 0..31 "
        "(the half at 31: +2**30 on 64 bits, -2**30 on a 32-bit board): the fast path "
        "stays exact",
    ("attention_forward", "l1 += x3 if x3 >= 0 else 0 - x3", "0", "-1", 1):
        "L1 one too small (a negative x3 counted |x3| - 1): L1 <= 2**15 bounds |S| by "
        "2**30, and S + half stays within int32 for every shift (the half at 31: +2**30 "
        "on 64 bits, -2**30 on a 32-bit board): the fast path stays exact",
    ("attention_forward", "x0 = (pa[0] ^ 0x8000) - 0x8000", "-", "+", 0):
        "x0 becomes the 16-bit word plus 2**16 >= 2**15, so L1(q_h[t]) > _L1_FIT for every "
        "head (the loop breaks before it loads k): " + _TO_EXACT,
    ("attention_forward", "l1 = x0 if x0 >= 0 else 0 - x0", "0", "1", 2):
        "at x0 = 0, 0 - x0 is 0 either way",
    ("attention_forward", "l1 += x3 if x3 >= 0 else 0 - x3", ">=", ">", 0):
        "at x3 = 0, 0 - x3 is 0 either way",
    ("attention_forward", "l1 += x2 if x2 >= 0 else 0 - x2", "0", "1", 1):
        "L1 larger by one per negative value: " + _TO_EXACT,
    ("attention_forward", "dot_rows(0, 0, srow, 0, 1, 4, k, h * _HS, NH * _HS, 1, ba, q,",
     "0", "-1", 0): _SCRATCH,
    ("attention_forward", "dot_rows(0, 0, srow, 0, 1, 4, k, h * _HS, NH * _HS, 1, ba, q,",
     "4", "3", 0): "dot_rows stores int32 for any by other than 1, 2 and below 0: 3 stores "
        "as 4 does",
    ("attention_forward", "(t * NH + h) * _HS, 0, 1, ba, t + 1, 1, _HS, sh_s, lo_l, hi_l)",
     "0", "1", 0): "the call has cols = 1: its only column c = 0 makes q's column stride "
        "bc (c * bc) no term",
    **{("attention_backward", line, "0", "1", 0): "only hh = -lim changes branch: there "
       "the formula gives -2**30 plus less than 2**17 (sh <= 15), within int32 and below "
       "every glo (G has at most 16 bits): it saturates to glo, the same value"
       for line in ("elif hh < 0 - lim_dp:", "elif hh < 0 - lim:")},
    ("narrow", "step = nb if nb > 0 else 0 - nb", ">", ">=", 0):
        "at nb = 0, 0 - nb is 0 either way",
    ("block_encode", "big = 0", "0", "-1", 0):
        "every block holds at least one value (end > aw), whose |x| >= 0 > -1 replaces "
        "the start: the same maximum",
    # (end of their entries)
    #
    # --- round 6: adam_update and model.py
    #
    ("adam_update", "gs_lo = 0 - (32768 >> gs_ls)", "0", "1", 0):
        "the mutant also saturates gs = -(32768 >> gs_ls) to -32768, which gs << gs_ls gives "
        "(32768 >> gs_ls is exact: gs_ls <= 15 as Fh <= 15, Fp >= 0); the unsplit path never "
        "reads gs_lo",
    ("adam_update", "unsplit = 0 if (bv == 4 and sh_m == 0 and sh_s >= 7 and hm >= 1 << 18",
     "==", "!=", 0):
        "bv (4, or -4 for block-scaled v) enters neither path's arithmetic: calls with bv = 4 "
        "take the general path, those with -4 the unsplit one under the same per-call and "
        "per-parameter bounds, where it equals the general path (each mul15 and gs compared "
        "on every m, g, v within them, m' and v' within hm, hv), and both store the root after",
    ("adam_update", "and hv >= (1 << 22) - 1) else big", "1", "2", 0): _UNSPLIT_NARROWER,
    ("adam_update", "roots = bv < 0", "0", "1", 0):
        "bv is 4 or -4 (weight_backward, blockadam.gather, conform_ops): bv < 1 is bv < 0",
    ("adam_update", "small_add = (1 << small_sh) - 1", "1", "0", 1):
        "the clamp's threshold moves up by one only where a << e = den << 15 (den a multiple "
        "of 2**(e - 15), or e <= 15): there the offset division gives 2**15 + (den >> 1) // "
        "den = 2**15, the clamp's value (emulated for every e <= 30 and den <= 2**15 + 1)",
    ("", "_HS = const(4)", "4", "5", 0):
        "model.py's _HS is read by no code (attention's loops use kernels.py's own _HS); "
        "tests/test_firmware_train.py checks it against params.HEAD_DIM",
    ("refresh_data", "if self.nums[3]:", "3", "2", 0):
        "nums[2], the schedule, is always true: without master weights (then called only by "
        "qgpt_train.begin) store_to_data reads the store it writes (layout: store = wd; "
        "sh_view 0, W's limits the store's) and rewrites every weight as it is",
    ("weight_backward", "mode, key, lo, hi, hm, hv, bs, 4)", "4", "3", 0):
        "bv = 3 fails the unsplit test's bv == 4 and keeps roots (bv < 0) false: every "
        "parameter takes the general path, which gives the same integers",
    ("train_step", _WMAX_DRIFT, "3", "2", 1):
        "a weight moves by at most X + 1 a step, X = (alpha 2**15) >> (u + sh_view) (every "
        "rounding, Kahan's compensation and the view's requantization emulated): a rise of "
        "X + 2 keeps the bound >= max |W|, which only chooses the path",
    # (end of their entries)
}
