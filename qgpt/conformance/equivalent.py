"""The firmware mutants no reachable input tells apart from the original (equivalent
mutants), each with a one-line argument why. qgpt/conformance/mutants.py reads it;
a survivor not listed here is a gap in the golden cases.

A key names the mutant without its line number, so that it survives edits and
moved code: (function, the source line stripped, the token, its replacement, how
often the token's text occurs in the line before it; ">>" counts for ">").

One module of over 600 lines on purpose: it is a table, not code (one entry and its
argument per mutant, the shared arguments named once at the top), read whole by
mutants.py and tests/test_mutants.py; split by firmware module it would repeat the
shared arguments or import them across files.
"""

# alpha_at is the only caller: n = (2**30 - p2) << 30 with p2 < 2**30 after the first
# beta_powers, so n >= 2**30; and Newton's iteration from above returns floor(sqrt(n))
# from any start at or above the root.
_ISQRT_BIG_N = ("alpha_at calls it only with n >= 2**30 (p2 < 2**30): the n < 2 branch is "
                "never taken")
_ISQRT_START = ("the start stays a number at or above sqrt(n), and Newton's iteration from "
                "above returns floor(sqrt(n)) from any such start")
# exp(z) is 0 in the formula itself below z = -11.8 (ip <= -17: rnd(val < 2**16, 17) = 0)
_EXP_ZERO = ("moves exp's cut-off at -16 by a step; the formula gives 0 there already "
             "(below -11.8: ip <= -17 and rnd(val < 2**16, 17) = 0), checked for every z")
_EXP_HALF = ("the interpolation's ties (14 over every z12) are all absorbed by the final "
             "rnd(val, -ip): tests/test_firmware_ops.py checks every z12")
_POSITIVE_LOAD = ("s32 = 0 leaves a ptr32 load unextended, and the value loaded here (ms in "
                  "[1, 2**31)) is never negative")

_SH_ZERO = "sh > -1 differs from sh > 0 only at sh = 0, where the shift is 0 either way"
# rsqrt's shift: ms >= eps = 1e-5 (in fm bits) bounds 1/sqrt(ms) by 316 < 2**9, so with M
# in (2**14, 2**15] sh >= 6 for every acts format (min over all of them: 6, q1.7)
_RMS_SH = ("rmsnorm's shift sh is at least 6 for every acts format (ms >= eps = 1e-5 bounds "
           "1/sqrt(ms) by 2**9, M > 2**14), so rsh = sh and ls = 0 either way")
_AT_LIMIT = "a value equal to the limit is stored as the limit either way"
_PRECHECK = ("at hh = +-lim (or one beyond) the rounding formula gives +-2**30 plus at most "
             "2**(16 - s), within int32 and beyond the limit (A, G, L: at most 2**23), so it "
             "saturates the same")
_DEAD_SH16 = ("the s >= 16 branch is dead: the shift is Fa or 15 (probabilities), and acts "
              "have at most 15 fractional bits")
_SMALL_SUM = ("this sum is at most 4 * 2**30 (HS = 4 products of 16-bit words) or (sum of "
              "probabilities) * 2**15: with either limit the formula stays within int32 "
              "and saturates the same")
_DEAD_VALUE = "the value is only used in the branch the test before it takes instead"
_ONLY_COUNTS = ("narrow's lo and hi only count values outside them (a checkpoint check), "
                "a count unit_adam ignores")
_S_SMALL = ("ln_q16's argument is a softmax denominator S < 27 * 2**15 < 2**20, so n <= 19 "
            "and only the left shift s << (29 - n) is taken")
_NEVER_READ = "the constant is read by no firmware code (model.py uses _V, _N of layout.py)"
_NEVER_READ_POLICY = "the constant is read by no code of firmware/policy.py or elsewhere"
_RELAXED = ("it lets the device accept a narrower class than the host's rule (section 3.4), "
            "which refuses such a policy before any device sees it; what the host accepts "
            "the device still accepts")
_BANNER = ("word_bits is only printed in the run's banner line (viper=64), which no "
           "result depends on")

_NEVER_READ_K = "the constant is read by no code of kernels.py (the limits come as arguments)"
_LIM_LOWER = ("for hh in [2**(13+s), 2**(14+s)) the rounding formula gives at least 2**29, "
              "beyond every limit it saturates to (A, G, L: at most 2**23): the same value")
_MS_MAX = ("the sum of 16 squares of b-bit acts is at most 2**(30 + g) (g = guard(16, b, b) "
           "rounded up to even): hh reaches 2**(14 + g) only at that maximum, where the "
           "formula gives 2**30 too")

EQUIVALENT = {
    ("", "_G_LO = const(-32768)  # G = q2.14, the activation gradients (section 7)", "32768",
     "32769", 0): _NEVER_READ_K,
    ("", "_G_LO = const(-32768)  # G = q2.14, the activation gradients (section 7)", "32768",
     "32767", 0): _NEVER_READ_K,
    ("", "_G_HI = const(32767)", "32767", "32768", 0): _NEVER_READ_K,
    ("", "_G_HI = const(32767)", "32767", "32766", 0): _NEVER_READ_K,
    ("", "_M_LIMIT = const(1073741823)  # 2**30 - 1", "1073741823", "1073741824", 0):
        _NEVER_READ_K,
    ("", "_M_LIMIT = const(1073741823)  # 2**30 - 1", "1073741823", "1073741822", 0):
        _NEVER_READ_K,
    ("embedding_forward", "ls = 0 - sh if sh < 0 else 0", "0", "1", 1):
        "at sh = 0, 0 - sh is 0, the else value",
    ("embedding_backward", "ls = 0 - sh if sh < 0 else 0", "0", "1", 1):
        "at sh = 0, 0 - sh is 0, the else value",
    ("embedding_backward", "rs = sh if sh > 0 else 0", ">", ">=", 0):
        "at sh = 0, sh is 0, the else value",
    ("embedding_backward", "ls = 0 - sh if sh < 0 else 0", "<", "<=", 0):
        "at sh = 0, 0 - sh is 0, the else value",
    ("embedding_backward", "lo_ls = 0 - ((0 - lo) >> ls)", "0", "1", 0):
        "it moves the test only for d = lo_ls, which the else branch stores as lo_ls << ls = "
        "lo too (lo = -2**k, k >= ls)",
    ("embedding_backward", "lo_ls = 0 - ((0 - lo) >> ls)", "0", "-1", 1):
        "(-1 - lo) >> ls is one less than (0 - lo) >> ls (lo = -2**k, k >= ls): it moves "
        "the test only for d = lo_ls, which the else branch stores as lo too",
    ("embedding_forward", "lo_ls = 0 - ((0 - lo) >> ls)", "0", "1", 0):
        "it moves the test only for y = lo_ls, which the else branch stores as lo_ls << ls = "
        "lo too (lo = -2**k, k >= ls)",
    ("embedding_forward", "rs = sh if sh > 0 else 0", ">", ">=", 0):
        "at sh = 0, sh is 0, the else value",
    ("embedding_forward", "ls = 0 - sh if sh < 0 else 0", "<", "<=", 0):
        "at sh = 0, 0 - sh is 0, the else value",
    ("rmsnorm_forward", "ls = 0 - sh if sh < 0 else 0", "0", "1", 1): _RMS_SH,
    ("rmsnorm_forward", "ls = 0 - sh if sh < 0 else 0", "0", "1", 0): _RMS_SH,
    ("rmsnorm_forward", "ls = 0 - sh if sh < 0 else 0", "-", "+", 0): _RMS_SH,
    ("rmsnorm_backward", "ls = 0 - sh if sh < 0 else 0", "0", "1", 1): _RMS_SH,
    ("rmsnorm_backward", "ls = 0 - sh if sh < 0 else 0", "0", "1", 0): _RMS_SH,
    ("rmsnorm_backward", "ls = 0 - sh if sh < 0 else 0", "-", "+", 0): _RMS_SH,
    ("linear_forward", "elif q < lo:", "<", "<=", 0): _AT_LIMIT,
    ("linear_forward", "if q > hi:", ">", ">=", 0): _AT_LIMIT,
    ("linear_backward", "if q > ghi:", ">", ">=", 0): _AT_LIMIT,
    ("linear_backward", "elif q < glo:", "<", "<=", 0): _AT_LIMIT,
    ("linear_backward", "if q > phi:", ">", ">=", 0): _AT_LIMIT,
    ("linear_backward", "elif q < plo:", "<", "<=", 0): _AT_LIMIT,
    ("adam_update", "m_lo = 0 - m_hi", "0", "1", 0):
        "gm = -m_hi gives -m_hi << m_ls = -2**30, the saturation value",
    ("adam_update", "big_sh = 15 - e if e <= 15 else 0", "0", "-1", 0):
        "big_sh is read only when e <= 15",
    ("adam_update", "big_sh = 15 - e if e <= 15 else 0", "0", "1", 0):
        "big_sh is read only when e <= 15",
    ("adam_update", "gm = 0 - big", "0", "-1", 0):
        "gm is read only as mul15(gm, 4915), the same for -2**30 - 1 and -2**30",
    ("adam_update", "elif mi < 0 - hm:", "<", "<=", 0): _AT_LIMIT,
    ("adam_update", "m_rs = sh_m if sh_m > 0 else 0", "0", "-1", 0):
        "at sh_m = 0, sh_m is 0, the else value",
    ("adam_update", "gs_ls = 0 - sh_s if sh_s < 0 else 0", "0", "1", 1):
        "at sh_s = 0, 0 - sh_s is 0, the else value",
    ("adam_update", "m_ls = 0 - sh_m if sh_m < 0 else 0", "0", "1", 1):
        "at sh_m = 0, 0 - sh_m is 0, the else value",
    ("adam_update", "if c > kahan_half - 1:", "1", "2", 0):
        "c = 127 is then set to kahan_half - 1 = 127: itself",
    ("adam_update", "small_sh = e - 15 if e > 15 else 0", ">", ">=", 0):
        "at e = 15, e - 15 is 0, the else value",
    ("narrow", "bad += 1", "1", "0", 0):
        "the count only refuses a checkpoint with values outside its policy (restore.py), "
        "which the host refuses too (checkpoint.check_run_state) and never writes",
    ("block_encode", "big = 0", "0", "1", 0):
        "big only sets the block's shift: for a block of zeros 1 and 0 both give kj = 0 "
        "(tbits >= 3)",
    ("block_encode", "kj = nbits - tbits if nbits > tbits else 0", ">", ">=", 0):
        "at nbits = tbits, nbits - tbits is 0, the else value",
    ("adam_update", "elif gs < gs_lo:", "<", "<=", 0):
        "gs = gs_lo gives gs_lo << gs_ls = -32768, the saturation value (gs_ls <= 15: "
        "Fh <= 15, Fp >= 0)",
    ("adam_update", "vi = ((vi >> 15) * _ADAM_K2 + (((vi & 0x7FFF) * _ADAM_K2 + 16384) >> 15)",
     "16384", "16385", 0):
        "it rounds differently only if (v mod 2**15) * 32440 = 2**14 - 1 mod 2**15, and "
        "that product is a multiple of 8",
    ("adam_update", "vi = 0", "0", "-1", 0):
        "v's update of v >= 0 and gs * gs >= 0 by non-negative factors is never negative",
    ("adam_update", "if d < 0 and w > hi + d:", "0", "1", 0):
        "for d = 0 the test w > hi never holds: w is a value of the store's format",
    ("add_forward", "elif v < lo:", "<", "<=", 0): _AT_LIMIT,
    ("cross_entropy_backward", "if g > ghi:", ">", ">=", 0): _AT_LIMIT,
    ("cross_entropy_backward", "elif g < glo:", "<", "<=", 0): _AT_LIMIT,
    ("add_forward", "if v > hi:", ">", ">=", 0): _AT_LIMIT,
    ("rmsnorm_forward", "rsh = sh if sh > 0 else 0", "0", "-1", 1): _RMS_SH,
    ("rmsnorm_forward", "rsh = sh if sh > 0 else 0", "0", "1", 0): _RMS_SH,
    ("rmsnorm_forward", "rsh = sh if sh > 0 else 0", "0", "1", 1): _RMS_SH,
    ("rmsnorm_forward", "ls = 0 - sh if sh < 0 else 0", "<", "<=", 0): _RMS_SH,
    ("rmsnorm_forward", "ls = 0 - sh if sh < 0 else 0", "0", "-1", 1): _RMS_SH,
    ("rmsnorm_forward", "lo_ls = 0 - ((0 - lo) >> ls)", ">>", "<<", 0): _RMS_SH,
    ("rmsnorm_forward", "hi_ls = hi >> ls", ">>", "<<", 0): _RMS_SH,
    ("rmsnorm_forward", "if v > hi_ls:", ">", ">=", 0): _AT_LIMIT,
    ("rmsnorm_forward", "elif v < lo_ls:", "<", "<=", 0): _AT_LIMIT,
    ("rmsnorm_backward", "rsh = sh if sh > 0 else 0", "0", "-1", 1): _RMS_SH,
    ("rmsnorm_backward", "rsh = sh if sh > 0 else 0", "0", "1", 0): _RMS_SH,
    ("rmsnorm_backward", "rsh = sh if sh > 0 else 0", "0", "1", 1): _RMS_SH,
    ("rmsnorm_backward", "ls = 0 - sh if sh < 0 else 0", "<", "<=", 0): _RMS_SH,
    ("rmsnorm_backward", "ls = 0 - sh if sh < 0 else 0", "0", "-1", 1): _RMS_SH,
    ("rmsnorm_backward", "lo_ls = 0 - ((0 - glo) >> ls)", ">>", "<<", 0): _RMS_SH,
    ("rmsnorm_backward", "hi_ls = ghi >> ls", ">>", "<<", 0): _RMS_SH,
    ("rmsnorm_backward", "if v > hi_ls:", ">", ">=", 0): _AT_LIMIT,
    ("rmsnorm_backward", "elif v < lo_ls:", "<", "<=", 0): _AT_LIMIT,
    ("rmsnorm_backward", "if ti > ghi:", ">", ">=", 0): _AT_LIMIT,
    ("rmsnorm_backward", "elif ti < glo:", "<", "<=", 0): _AT_LIMIT,
    ("attention_backward", "if diff > ghi:", ">", ">=", 0): _AT_LIMIT,
    ("attention_backward", "elif diff < glo:", "<", "<=", 0): _AT_LIMIT,
    ("adam_update", "gs_ls = 0 - sh_s if sh_s < 0 else 0", "<", "<=", 0):
        "at sh_s = 0, 0 - sh_s is 0, the else value",
    ("adam_update", "m_ls = 0 - sh_m if sh_m < 0 else 0", "<", "<=", 0):
        "at sh_m = 0, 0 - sh_m is 0, the else value",
    ("adam_update", "gs_lo = 0 - (32768 >> gs_ls)", "32768", "32767", 0):
        "the mutant also saturates g = -(32768 >> ls) to -32768, which is what g << ls gives",
    ("adam_update", "small_sh = e - 15 if e > 15 else 0", "15", "14", 1):
        "at e = 15, e - 15 is 0, the else value",
    ("adam_update", "big_sh = 15 - e if e <= 15 else 0", "<=", "<", 0):
        "at e = 15, 15 - e is 0, the else value",
    ("adam_update", "+ (g2 >> 15) * _ADAM_C2 + (((g2 & 0x7FFF) * _ADAM_C2 + 16384) >> 15))",
     "16384", "16383", 0):
        "a tie needs (g2 mod 2**15) * 328 = 2**14 mod 2**15, i.e. g2 mod 2**15 an odd "
        "multiple of 2**11; g2 = gs * gs has an even number of factors 2",
    ("adam_update", "a = mi if mi >= 0 else 0 - mi", "0", "1", 0): "at mi = 0, 0 - mi is 0",
    ("adam_update", "a = mi if mi >= 0 else 0 - mi", ">=", ">", 0): "at mi = 0, 0 - mi is 0",
    ("adam_update", "if mi < 0:", "0", "1", 0):
        "at mi = 0 the ratio is 0 (a = 0: (den/2 - den) // den + 1 = 0), and 0 - 0 = 0",
    ("adam_update", "if mi < 0:", "<", "<=", 0):
        "at mi = 0 the ratio is 0 (a = 0: (den/2 - den) // den + 1 = 0), and 0 - 0 = 0",
    ("adam_update", "if w > hi:", ">", ">=", 0): _AT_LIMIT,
    ("adam_update", "elif w < lo:", "<", "<=", 0): _AT_LIMIT,
    ("adam_update", "if c > kahan_half - 1:", ">", ">=", 0): _AT_LIMIT,
    ("adam_update", "elif c < 0 - kahan_half:", "0", "1", 0):
        "c < -127 holds for c = -128 only (c = t - (w << 8) >= -128 unless w saturated "
        "below), which is set to -128: itself",
    ("adam_update", "elif c < 0 - kahan_half:", "<", "<=", 0): _AT_LIMIT,
    ("adam_update", "if d < 0 and w > hi + d:", ">", ">=", 0):
        "at w = hi + d, w - d is hi either way",
    ("narrow", "bad += 1", "+=", "-=", 0):
        "the count is only tested for nonzero (restore.py) or ignored (unit_adam)",
    ("narrow", "bad += 1", "1", "2", 0):
        "the count is only tested for nonzero (restore.py) or ignored (unit_adam)",
    ("block_encode", "ax = x if x >= 0 else 0 - x", "0", "1", 0):
        "at x = 0, 0 - x is 0 either way",
    ("block_encode", "ax = x if x >= 0 else 0 - x", ">=", ">", 0):
        "at x = 0, 0 - x is 0 either way",
    ("block_decode", "kj = 0", "0", "1", 0):
        "kj is set from the block's shift before it is read (left starts at 0)",
    ("block_decode", "kj = 0", "0", "-1", 0):
        "kj is set from the block's shift before it is read (left starts at 0)",
    ("adam_update", "small_add = (1 << small_sh) - 1", "1", "0", 1):
        "it moves the clamp's test only at a * 2**e = den * 2**15, where the quotient is "
        "2**15 = R_MAX, the clamp's value",
    ("adam_update", "m_rs = sh_m if sh_m > 0 else 0", ">", ">=", 0):
        "at sh_m = 0, sh_m is 0, the else value",
    ("adam_update", "m_rs = sh_m if sh_m > 0 else 0", "0", "-1", 1):
        "m_rs is read only when it is positive",
    ("adam_update", "gs_rs = sh_s if sh_s > 0 else 0", "0", "-1", 1):
        "gs_rs is read only when it is positive",
    ("adam_update", "gs_rs = sh_s if sh_s > 0 else 0", ">", ">=", 0):
        "at sh_s = 0, sh_s is 0, the else value",
    ("adam_update", "half_uk = 1 << (uk - 1) if uk > 0 else 0", "0", "1", 0):
        "kahan has no master weights, so u = 58 - bitlen(lr_q30) - Fw >= 13 (lr < 1, Fw <= "
        "15) and uk = u - 8 >= 5; other modes do not read half_uk",
    ("adam_update", "half_uk = 1 << (uk - 1) if uk > 0 else 0", "0", "-1", 1):
        "kahan has no master weights, so uk = u - 8 >= 5; other modes do not read half_uk",
    ("adam_update", "half_uk = 1 << (uk - 1) if uk > 0 else 0", "0", "1", 1):
        "kahan has no master weights, so uk = u - 8 >= 5; other modes do not read half_uk",
    ("adam_update", "half_uk = 1 << (uk - 1) if uk > 0 else 0", ">", ">=", 0):
        "kahan has no master weights, so uk = u - 8 >= 5; other modes do not read half_uk",
    ("adam_update", "big_sh = 15 - e if e <= 15 else 0", "15", "14", 1):
        "at e = 15, 15 - e is 0, the else value",
    ("adam_update", "+ (g2 >> 15) * _ADAM_C2 + (((g2 & 0x7FFF) * _ADAM_C2 + 16384) >> 15))",
     "16384", "16385", 0):
        "it rounds differently only if (g2 mod 2**15) * 328 = 2**14 - 1 mod 2**15, and that "
        "product is even",
    ("adam_update", "elif vi < 0:", "0", "-1", 0):
        "v's update of v >= 0 and gs * gs >= 0 by non-negative factors is never negative",
    ("adam_update", "elif vi < 0:", "<", "<=", 0):
        "v's update of v >= 0 and gs * gs >= 0 by non-negative factors is never negative",
    ("adam_update", "elif gm < m_lo:", "<", "<=", 0):
        "gm = m_lo gives m_lo << m_ls = -2**30, the saturation value",
    ("adam_update", "if gm > m_hi:", ">", ">=", 0):
        "gm = m_hi gives m_hi << m_ls = 2**30, the saturation value",
    ("adam_update", "if d < 0 and w > hi + d:", "<", "<=", 0):
        "for d = 0 the test w > hi never holds: w is a value of the store's format",
    ("block_encode", "b1 = b0 + nblk if b0 + nblk < n else n", "<", "<=", 0):
        "for b0 + nblk = n both give n",
    ("block_encode", "if ax > big:", ">", ">=", 0): "big, the maximum, is the same",
    ("unit_adam", "K.block_decode(vw, mdl.v, vk, off, n, n_v, bv, 1)", "1", "2", 0):
        "block_decode tests sq only for truth",
    ("unit_adam", "K.block_encode(mdl.v, vk, vw, off, n, n_v, bits_v, bv, 1)", "1", "2", 0):
        "block_encode tests sq only for truth",
    ("unit_adam", "K.narrow(mdl.m, off, mw, n, 0 - hm, hm, bm)", "0", "-1", 0): _ONLY_COUNTS,
    ("unit_adam", "K.narrow(mdl.m, off, mw, n, 0 - hm, hm, bm)", "0", "1", 0): _ONLY_COUNTS,
    ("unit_adam", "K.narrow(mdl.m, off, mw, n, 0 - hm, hm, bm)", "-", "+", 0): _ONLY_COUNTS,
    ("unit_adam", "K.narrow(mdl.v, off, vw, n, 0, hv, bv)", "0", "1", 0): _ONLY_COUNTS,
    ("unit_adam", "K.narrow(mdl.v, off, vw, n, 0, hv, bv)", "0", "-1", 0): _ONLY_COUNTS,
    ("gather", "size = U if a + U <= _N else _N - a", "<=", "<", 0):
        "for a + U = N, N - a is U",
    ("gather", "hi = off + n if off + n < a + size else a + size", "<", "<=", 0):
        "for off + n = a + size both give it",
    ("gather", "lo = off if off > a else a", ">", ">=", 0): "for off = a both give it",
    ("ln_q16", "mant = s << (29 - n) if n <= 29 else s >> (n - 29)  # in [2**29, 2**30)", "29",
     "28", 1): _S_SMALL,
    ("ln_q16", "mant = s << (29 - n) if n <= 29 else s >> (n - 29)  # in [2**29, 2**30)", "29",
     "28", 2): _S_SMALL,
    ("ln_q16", "mant = s << (29 - n) if n <= 29 else s >> (n - 29)  # in [2**29, 2**30)", "29",
     "30", 1): _S_SMALL,
    ("ln_q16", "mant = s << (29 - n) if n <= 29 else s >> (n - 29)  # in [2**29, 2**30)", "29",
     "30", 2): _S_SMALL,
    ("ln_q16", "mant = s << (29 - n) if n <= 29 else s >> (n - 29)  # in [2**29, 2**30)", "<=",
     "<", 0): _S_SMALL,
    ("ln_q16", "mant = s << (29 - n) if n <= 29 else s >> (n - 29)  # in [2**29, 2**30)", ">>",
     "<<", 0): _S_SMALL,
    ("ln_q16", "mant = s << (29 - n) if n <= 29 else s >> (n - 29)  # in [2**29, 2**30)", "-",
     "+", 1): _S_SMALL,
    ("ln_q16", "idx, rem = (mant >> 23) & 63, (mant >> 8) & 0x7FFF", "0x7FFF", "32766", 0):
        "mant = S << (29 - n) with n <= 19 has its low 10 bits 0: rem's bit 0 is always 0",
    ("", "VOCAB = const(27)", "27", "28", 0): _NEVER_READ,
    ("", "VOCAB = const(27)", "27", "26", 0): _NEVER_READ,
    ("", "_N = const(4192)", "4192", "4193", 0): _NEVER_READ,
    ("", "_N = const(4192)", "4192", "4191", 0): _NEVER_READ,
    ("store_to_data", "elif x < lo:", "<", "<=", 0): _AT_LIMIT,
    ("store_to_data", "if x > hi:", ">", ">=", 0): _AT_LIMIT,
    ("word_bits", "return 64 if (one << 31) > 0 else 32", "64", "65", 0): _BANNER,
    ("word_bits", "return 64 if (one << 31) > 0 else 32", "64", "63", 0): _BANNER,
    ("word_bits", "return 64 if (one << 31) > 0 else 32", "32", "33", 0): _BANNER,
    ("word_bits", "return 64 if (one << 31) > 0 else 32", "32", "31", 0): _BANNER,
    ("word_bits", "return 64 if (one << 31) > 0 else 32", "31", "30", 0): _BANNER,
    ("word_bits", "return 64 if (one << 31) > 0 else 32", "31", "32", 0): _BANNER,
    ("word_bits", "return 64 if (one << 31) > 0 else 32", "<<", ">>", 0): _BANNER,
    ("word_bits", "return 64 if (one << 31) > 0 else 32", ">", ">=", 0): _BANNER,
    ("word_bits", "one = 1", "1", "2", 0): _BANNER,
    ("word_bits", "return 64 if (one << 31) > 0 else 32", "0", "1", 0): _BANNER,
    ("word_bits", "return 64 if (one << 31) > 0 else 32", "0", "-1", 0): _BANNER,
    ("", "_GRAD_MAX = const(432)  # T * V: int32 values of the logits buffer, a weight "
     "gradient's piece", "432", "433", 0):
        "433 // n_in = 432 // n_in for n_in 16 and 64: the same pieces",
    ("", "_GRAD_MAX = const(432)  # T * V: int32 values of the logits buffer, a weight "
     "gradient's piece", "432", "431", 0):
        "pieces of 26 rows (n_in 16) for 27: Adam is elementwise and gather waits for whole "
        "units; lm_head's one new cut leaves no more units pending (15 block sizes tried)",
    ("row_max", "if x > mx:", ">", ">=", 0): "an equal element leaves the same maximum",
    ("pieces", "return 1 if nb == 4 else (n + _CHUNK - 1) // _CHUNK", "1", "0", 1):
        "(n + 32) // 32 exceeds ceil(n / 32) only for n a multiple of 32: one more piece "
        "of no values, which adds no bytes to a hash, dump or checkpoint",
    ("piece", "return self.chunk if left >= _CHUNK else self.chunk[: 4 * left]", ">=", ">",
     0): "for left = 32 the slice of all 128 bytes holds the same bytes as the chunk",
    ("piece", "K.widen(self.chunk, buf, k * _CHUNK, _CHUNK if left > _CHUNK else left, nb)",
     ">", ">=", 0): "for left = 32 both give 32",
    ("row_max", "for j in range(off + 1, off + n):", "1", "0", 0):
        "the maximum over the row with its first element compared twice is the same",
    ("__init__", "self.blk = (mk, vk, mw, vw, slots, [-1] * len(slots), [0] * len(slots), u, "
     "blocks,", "0", "1", 0): "a slot's count is set to 0 whenever gather takes the slot",
    ("__init__", "self.blk = (mk, vk, mw, vw, slots, [-1] * len(slots), [0] * len(slots), u, "
     "blocks,", "0", "-1", 0): "a slot's count is set to 0 whenever gather takes the slot",
    ("__init__", "self.tok = bytearray(_T + 1)  # (T+1,) tokens: inputs tok[0:T], targets "
     "tok[1:T+1]", "1", "2", 0):
        "one more byte after the tokens, never read: every loop takes T, sampling BLOCK",
    ("", "GRAD_LO = -32768", "32768", "32769", 0): _NEVER_READ_POLICY,
    ("", "GRAD_LO = -32768", "32768", "32767", 0): _NEVER_READ_POLICY,
    ("", "GRAD_HI = 32767", "32767", "32768", 0): _NEVER_READ_POLICY,
    ("", "GRAD_HI = 32767", "32767", "32766", 0): _NEVER_READ_POLICY,
    ("", "GS_FRAC = 14  # the default Fh = Fv / 2: sqrt(v)'s fractional bits", "14", "15", 0):
        _NEVER_READ_POLICY,
    ("", "GS_FRAC = 14  # the default Fh = Fv / 2: sqrt(v)'s fractional bits", "14", "13", 0):
        _NEVER_READ_POLICY,
    ("", "BLOCK = 16  # positions (qgpt/params.py)", "16", "15", 0):
        "read only by guard(BLOCK, ...), through (BLOCK - 1).bit_length(): 4 for 15 and 16",
    ("", "BOS = 26", "26", "25", 0): "params.BOS is read by no code (model.py has its own)",
    ("", "BOS = 26", "26", "27", 0): "params.BOS is read by no code (model.py has its own)",
    **{("check", "widths = ((4, 16), (4, 16), (4, 24), (4, 16), (8, 32), (8, 32), (8, 32), (8, "
        "32))", tok, rep, k): _RELAXED for tok, rep, k in (
            ("4", "3", 0), ("4", "3", 1), ("4", "3", 2), ("4", "3", 4), ("8", "7", 0),
            ("8", "7", 1), ("8", "7", 2), ("8", "7", 3))},
    ("check", "if not 4 <= f.bits <= 16:", "4", "3", 0): _RELAXED,
    ("__init__", 'def __init__(self, data, rounding="nearest", master=None, lr_q30=10737418, '
     'policy=None):', "10737418", "10737419", 0):
        "a default no caller uses: conform_ops and runcfg always pass lr_q30",
    ("numbers", "1 if S else 0,", "1", "2", 0):
        "Model.wide is only tested for truth (refresh_data)",
    ("numbers", "min(M.hi, _KERNEL_RANGE - 1), V.hi, S.frac_bits - fw if S else 0, W.lo, W.hi),",
     "0", "-1", 0): "the master shift is read only with master weights (refresh_data)",
    ("numbers", "g += g & 1", "+=", "-=", 0):
        "guard(16, b, b) = max(0, 2b - 28) is even, so g & 1 is 0",
    ("numbers", "eps = max(1, ((1 << fm) + 50000) // 100000)  # 1e-5 half up, at least one "
     "step", "50000", "50001", 0):
        "it rounds differently only if 2**fm = 49999 mod 100000, and 2**fm is 1 or even",
    ("check", "if not 8 <= f.block <= 1024:", "8", "7", 0): _RELAXED,
    ("train_step", "key = prng.key(self.seed, prng.STREAM_ROUND, step) if stochastic else 0",
     "0", "1", 0): "adam_update reads the key only when it rounds stochastically",
    ("train_step", "key = prng.key(self.seed, prng.STREAM_ROUND, step) if stochastic else 0",
     "0", "-1", 0): "adam_update reads the key only when it rounds stochastically",
    ("adam", "if self.blk[7]:", "7", "6", 0):
        "blk[6], the slots' counts, is empty exactly when blk[7] = U is 0 (layout.py gives "
        "U > 0 at least one slot)",
    ("word_bits", "one = 1", "1", "0", 0): _BANNER,
    ("embedding_backward", "rs = sh if sh > 0 else 0", "0", "-1", 0): _SH_ZERO,
    ("rmsnorm_forward", "rsh = sh if sh > 0 else 0", "0", "-1", 0): _SH_ZERO,
    ("rmsnorm_backward", "rsh = sh if sh > 0 else 0", "0", "-1", 0): _SH_ZERO,
    ("embedding_backward", "if w > hi:", ">", ">=", 0): "w = hi is stored as hi either way",
    ("gather", "s = -1", "1", "2", 0): "s = -1 only marks 'no slot yet', tested as s < 0",
    ("isqrt", "if n < 2:", "<", "<=", 0): _ISQRT_BIG_N,
    ("isqrt", "if n < 2:", "2", "3", 0): _ISQRT_BIG_N,
    ("isqrt", "if n < 2:", "2", "1", 0): "for n = 1 the loop returns 1 too; and n >= 2**30",
    ("isqrt", "x = 1", "1", "2", 0): _ISQRT_START,
    ("isqrt", "while x * x <= n:  # a power of two above the root", "<=", "<", 0):
        _ISQRT_START,
    ("isqrt", "x <<= 1", "1", "2", 0): _ISQRT_START,
    ("", "_EXP_ZERO_BELOW = const(16)  # exp(z) = 0 for z <= -16", "16", "15", 0): _EXP_ZERO,
    ("", "_EXP_ZERO_BELOW = const(16)  # exp(z) = 0 for z <= -16", "16", "17", 0): _EXP_ZERO,
    ("exp_neg", "if z <= 0 - (_EXP_ZERO_BELOW << f):", "<=", "<", 0): _EXP_ZERO,
    ("exp_neg", "if z <= 0 - (_EXP_ZERO_BELOW << f):", "0", "1", 0): _EXP_ZERO,
    ("exp_neg", "if z <= 0 - (_EXP_ZERO_BELOW << f):", "0", "-1", 0): _EXP_ZERO,
    ("softmax", "zero_at = 0 - (_EXP_ZERO_BELOW << f)", "0", "1", 0): _EXP_ZERO,
    ("softmax", "zero_at = 0 - (_EXP_ZERO_BELOW << f)", "0", "-1", 0): _EXP_ZERO,
    ("softmax", "if d > zero_at:  # exp_neg(d, f), inlined", ">", ">=", 0): _EXP_ZERO,
    ("", "_ROUND_STOCHASTIC = const(2)", "2", "1", 0):
        "never read: adam_update tests the mode against nearest and floor; stochastic is "
        "the else branch",
    ("", "_ROUND_STOCHASTIC = const(2)", "2", "3", 0):
        "never read: adam_update tests the mode against nearest and floor; stochastic is "
        "the else branch",
    ("rsqrt", "one = 1", "1", "0", 0): _POSITIVE_LOAD,
    ("rsqrt", "s32 = one << 31", "<<", ">>", 0): _POSITIVE_LOAD,
    ("rsqrt", "a = ms >> (k + k) if k >= 0 else ms << (0 - k - k)  # in [2**28, 2**30)", ">=",
     ">", 0): "for k = 0 both branches shift by 0",
    ("rsqrt", "a = ms >> (k + k) if k >= 0 else ms << (0 - k - k)  # in [2**28, 2**30)", "0",
     "1", 0): "for k = 0 both branches shift by 0",
    ("exp_neg", "rem = (fr & 0xFFFFF) >> 5", "0xFFFFF", "1048574", 0):
        "the mask's bit 0 is shifted out by >> 5 either way",
    ("softmax", "rem = (fr & 0xFFFFF) >> 5", "0xFFFFF", "1048574", 0):
        "the mask's bit 0 is shifted out by >> 5 either way",
    ("exp_neg", "val = lo + (((e2[idx + 1] - lo) * rem + 16384) >> 15)  # Q15, [2**15, 2**16)",
     "16384", "16385", 0): _EXP_HALF,
    ("exp_neg", "val = lo + (((e2[idx + 1] - lo) * rem + 16384) >> 15)  # Q15, [2**15, 2**16)",
     "16384", "16383", 0): _EXP_HALF,
    ("softmax", "e = lo + (((e2[idx + 1] - lo) * rem + 16384) >> 15)", "16384", "16385", 0):
        _EXP_HALF,
    ("softmax", "e = lo + (((e2[idx + 1] - lo) * rem + 16384) >> 15)", "16384", "16383", 0):
        _EXP_HALF,
    ("softmax", "half12 = (1 << s12) >> 1 if s12 > 0 else 0", ">", ">=", 2):
        "for s12 = 0, (1 << 0) >> 1 is 0, the else value",
    ("softmax", "half12 = (1 << s12) >> 1 if s12 > 0 else 0", "0", "-1", 0):
        "s12 > -1 is s12 >= 0: for s12 = 0, (1 << 0) >> 1 is 0, the else value",
    ("softmax", "half12 = (1 << s12) >> 1 if s12 > 0 else 0", "0", "1", 1):
        "half12 is read only when s12 > 0",
    ("softmax", "half12 = (1 << s12) >> 1 if s12 > 0 else 0", "0", "-1", 1):
        "half12 is read only when s12 > 0",
    ("softmax", "for j in range(off + 1, end):", "1", "0", 0):
        "the maximum over the row with its first element compared twice is the same",
    ("softmax", "if zj > mx:", ">", ">=", 0): "an equal element leaves the same maximum",
    ("softmax", "z12 = (d + half12) >> s12 if s12 > 0 else d << (0 - s12)", ">", ">=", 2):
        "for s12 = 0, half12 = 0: (d + 0) >> 0 is d << 0",
    ("softmax", "z12 = (d + half12) >> s12 if s12 > 0 else d << (0 - s12)", "0", "-1", 0):
        "s12 > -1 is s12 >= 0: for s12 = 0, half12 = 0 and (d + 0) >> 0 is d << 0",
    ("embedding_forward", "elif y < lo_ls:", "<", "<=", 0):
        "y = lo_ls stores lo_ls << ls, which is lo (-2**(b-1) is exact under the shift)",
    ("sample", "tok[0] = BOS", "0", "1", 0):
        "tok[0] holds BOS already (training writes it each step, sampling never writes "
        "index 0): writing BOS to tok[1] is overwritten by the first token",
    ("sample", "tok[0] = BOS", "0", "-1", 0):
        "tok[0] holds BOS already; tok[-1] (index BLOCK) is written before it is read",
    ("next_token", "z[j] = (get32(lg, row + j) * inv_t + 128) >> 8", "+", "-", 1):
        "(x - 128) >> 8 is (x + 128) >> 8 minus 1 for every x: every tempered logit moves "
        "by 1, and softmax does not change when a whole row moves",
}


# --- the speed work's kernels (dot_rows, fast paths, isqrt chords) ---
# dot_rows's callers (kernels.py): rmsnorm's two sums (rows = cols = 1, by = 0: nothing
# stored, the value returned), linear's rows and columns, attention's scores, out, dp, dv,
# dq and dk. Every caller passes a's column stride ac = 0 and b with 1 or 2 bytes a word.
_NO_STORE = ("by = 0 (rmsnorm's sums): dot_rows stores nothing and adds nothing (add = 0), "
             "so y's index and strides are never read")
_ONE_ROW = ("rows = cols = 1 (rmsnorm's sums): r = c = 0, so the row and column strides "
            "multiply 0; a second row (ar = br = 0) repeats the same sum, returned the same")
_AC_ZERO = "every caller passes ac = 0 (a's column stride): c * ac is 0 either way"
_BB_NOT_4 = ("every caller passes b with 1- or 2-byte words (bb = 1 or 2): the bb == 4 "
             "load is never taken")
_BOTH_EXACT = ("the 16-bit loop and the general loop compute the same exact int32 pair "
               "(3.7): a changed test only moves words from one to the other")
_LO_POW2 = ("-lo is 2**(b-1) (or 2**30), and ls = Fp - Fg <= min(Fa, Fp) keeps it a "
            "multiple of 2**ls: at d = lo_ls, d << ls is lo, what the moved bound stores")
_RMS_FWD = ("ms = int(dot_rows(rs, 0, 0, 0, 0, x, row, 0, 0, 1, ba, x, row, 0, 0, 1, ba, 1, "
            "1, C, g,")
_RMS_BWD = ("c = int(dot_rows(dx, 0, 0, 0, 0, dy, row, 0, 0, 1, bg, y, row, 0, 0, 1, ba, 1, "
            "1, C, sh_c,")
# The fast paths' bound: partial sums <= L1 * max <= FIT = 2**30 - 1. L1 <= 64 * 2**15 =
# 2**21 (16 * 2**15 for dW), so the bound binds only for max >= 2**9; the rounding's
# half is at most 2**26 (dW's shift 27).
_OVERESTIMATE = ("gives u + 2**16 for u >= 0 and 2**16 - |u| for u < 0, both >= |u|: the "
                 "bound only grows, which sends rows from the fast path to the exact one")
_MAX_8BIT = ("abs_max of 8-bit words is never used: the fast paths that read max |W| take "
             "16-bit words only (bw == 2)")
_MAX_LESS_1 = ("max |W| one too small (a negative largest): L1 <= FIT // (m - 1) bounds |S| "
               "by 2**30 * m / (m - 1) < 2**30 + 2**22 (the bound binds only for m >= 2**9), "
               "plus the half < 2**31: the fast path stays exact")
_L1_LESS = ("L1 at most n <= 64 too small (one per negative value): |S| <= 2**30 + 64 * "
            "2**15, plus the half, stays below 2**31: the fast path stays exact")
_COLS_ONE = "cols = 1: c = 0, so the column strides yc, ac and bc multiply 0"
_L1_LESS_2 = ("-1 counted as -1, not 1: L1 at most 2 * 64 too small, |S| <= 2**30 + 2**22 "
              "plus the half stays below 2**31: the fast path stays exact")
_ABS_32 = ("every caller passes 1- or 2-byte words (weights, x): the 32-bit load is never "
           "taken")
_TO_EXACT = ("only sends rows from the fast path to the exact one (dot_rows's int32 pair), "
             "which gives the same integers")
_FIT_2_30 = ("the bound 2**30 instead of 2**30 - 1: |S| <= 2**30 plus the half (<= 2**26) "
             "stays below 2**31, the fast path stays exact")
# adam_update's isqrt: chords, a Newton step, then `while root * root > vs: root -= 1` and
# `while (root + 1) * (root + 1) <= vs: root += 1`, which end at floor(sqrt(vs)) from any
# start in [1, 46340] (every product within int32). Each such mutant
# was emulated with int32 checks on every v < 2**16, k*k - 1 .. k*k + 1, each chord's and
# normalization step's ends and 20000 random v in [0, 2**30].
_CHORD_START = ("only moves the start of Newton's step (normalization or chord); it stays in "
                "[1, 46340], from where the exact corrections end at floor(sqrt(v))")
EQUIVALENT.update({
    # rmsnorm's calls: y's index, strides (0, 1, 2) and by = -1 store nothing; the row and
    # column strides (4 .. 7) and a second row or column change no term
    **{(f, line, "0", rep, k): _NO_STORE if k < 3 else _ONE_ROW
       for f, line in (("rmsnorm_forward", _RMS_FWD), ("rmsnorm_backward", _RMS_BWD))
       for k in (0, 1, 2, 4, 5, 6, 7) for rep in ("1", "-1")},
    **{(f, line, "0", "-1", 3): "by = -1 is no width dot_rows stores: nothing stored, as by = 0"
       for f, line in (("rmsnorm_forward", _RMS_FWD), ("rmsnorm_backward", _RMS_BWD))},
    **{(f, line, "1", "2", k): _ONE_ROW
       for f, line in (("rmsnorm_forward", _RMS_FWD), ("rmsnorm_backward", _RMS_BWD))
       for k in (2, 3)},
    ("dot_rows", "lim = 1 << (14 + sh) if sh < 16 else 0", "0", "-1", 0): _DEAD_VALUE,
    ("dot_rows", "lim = 1 << (14 + sh) if sh < 16 else 0", "<", "<=", 2): _DEAD_VALUE,
    ("dot_rows", "ka = ai + r * ar + c * ac", "+", "-", 1): _AC_ZERO,
    ("dot_rows", "if bb == 2 and ba == 2:  # int16 words: no width tests, byte addresses",
     "2", "3", 0): _BOTH_EXACT,
    ("dot_rows", "p = x * ((pb32[kb] ^ s32) - s32)", "-", "+", 0): _BB_NOT_4,
    ("embedding_backward", "lo_ls = 0 - ((0 - lo) >> ls)", "0", "1", 0): _LO_POW2,
    ("embedding_backward", "lo_ls = 0 - ((0 - lo) >> ls)", "0", "-1", 1): _LO_POW2,
    ("embedding_backward", "rs = sh if sh > 0 else 0", ">", ">=", 0): _SH_ZERO,
    ("embedding_backward", "ls = 0 - sh if sh < 0 else 0", "<", "<=", 0):
        "at sh = 0, 0 - sh is 0, the else value",
    ("rmsnorm_forward", "0 - big, big, 0))", "0", "-1", 0):
        "the mean square's sum of squares is never negative: lo is never reached",
    **{("rmsnorm_backward", "lo_ls = 0 - ((0 - glo) >> ls)", "0", rep, k):
       "ls = 0 (rmsnorm's shift is at least 6, see _RMS_SH): lo_ls = glo + 1, and v = glo "
       "is stored as glo either way" for rep, k in (("1", 0), ("-1", 1))},
    ("rmsnorm_backward", "rsh = sh if sh > 0 else 0", ">", ">=", 0): _RMS_SH,
    ("rmsnorm_forward", "rsh = sh if sh > 0 else 0", ">", ">=", 0): _RMS_SH,
    # abs_max: an overestimate of the bound only sends rows to the exact path
    ("abs_max", "s32 = one << 31", "31", "30", 0): _ABS_32,
    ("abs_max", "v = (p16[i] ^ 0x8000) - 0x8000", "-", "+", 0): _OVERESTIMATE,
    ("linear_forward", "xi = (px16[i] ^ 0x8000) - 0x8000", "-", "+", 0): _OVERESTIMATE,
    ("abs_max", "v = (p8[i] ^ 0x80) - 0x80", "-", "+", 0): _MAX_8BIT,
    ("abs_max", "elif nb == 1:", "1", "2", 0): _MAX_8BIT,
    ("abs_max", "v = 0 - v", "0", "-1", 0): _MAX_LESS_1,
    ("abs_max", "if v < 0:", "<", "<=", 0): "at v = 0, 0 - v is 0 either way",
    ("adam_update", "half_uk = 1 << (uk - 1) if uk > 0 else 0", "0", "-1", 0):
        "kahan has no master weights, so uk = u - 8 >= 5; other modes do not read half_uk",
    ("adam_update", "gm = 0 - big", "0", "-1", 0):
        "gm only enters mul15(gm, 4915): -2**30 - 1 and -2**30 give the same rounded product "
        "(they differ by 4915 / 2**15 < 1/2, away from a tie)",
    ("adam_update", "elif gs < gs_lo:", "<", "<=", 0):
        "at gs = gs_lo, gs << gs_ls is -32768 (32768 >> gs_ls is exact, gs_ls <= 15): the value "
        "the saturation stores",
    ("adam_update", "elif mi < 0 - hm:", "<", "<=", 0): _AT_LIMIT,
    ("adam_update", "if vn >= 1 << 20:", "1", "0", 0): _CHORD_START,
    **{("adam_update", line, tok, rep, k): _CHORD_START for line, tok, rep, k in (
        ("s2 = 6", "6", "5", 0), ("s2 = 0", "0", "1", 0), ("vn >>= 6", "6", "7", 0),
        ("if vn >= 1 << 14:", "<<", ">>", 0), ("if vn >= 1 << 10:", "<<", ">>", 0),
        ("if vn >= 1 << 8:", "<<", ">>", 0), ("s2 += 3", "3", "2", 0), ("s2 += 2", "2", "1", 1),
        ("s2 += 1", "1", "0", 0), ("vn >>= 4", "4", "5", 0), ("vn >>= 2", "2", "3", 0),
        ("root = ((vn * 137) >> 8) + 119", "137", "138", 0),
        ("root = ((vn * 137) >> 8) + 119", "8", "7", 0), ("elif vn >= 128:", ">=", ">", 0),
        ("root = ((vn * 163) >> 8) + 100", "163", "162", 0), ("elif vn >= 96:", "96", "97", 0),
        ("root = ((vn * 194) >> 8) + 84", "84", "85", 0),
        ("root = ((vn * 230) >> 8) + 71", "71", "72", 0),
        ("root = (root << s2) >> 4  # >= 4", "4", "5", 0))},
    # the loop up: one integer Newton step from any positive start gives at least
    # floor(sqrt(vs)) (AM-GM, floors included), and the loop down stops at it
    **{("adam_update", line, tok, rep, k): "the loop up never runs: one integer Newton step "
       "from a positive start is at least floor(sqrt(vs)), and the loop down ends on it"
       for line, tok, rep, k in (("while (root + 1) * (root + 1) <= vs:", "1", "2", 0),
                                 ("root += 1", "1", "0", 0))},
    **{("linear_forward", "xi = (px16[i] ^ 0x8000) - 0x8000", "0x8000", rep, k): _L1_LESS
       for rep in ("32767", "32769") for k in (0, 1)},
    ("linear_forward", "l1 += xi if xi >= 0 else 0 - xi", "0", "1", 0):
        "at xi = 0, 0 - xi is 0 either way",
    ("abs_max", "if v < 0:", "0", "1", 0): "at v = 0, 0 - v is 0 either way",
    ("abs_max", "v = 0 - v", "0", "1", 0): "max |W| one too large: " + _TO_EXACT,
    ("abs_max", "if v > big:", ">", ">=", 0): "an equal value leaves the same maximum",
    ("linear_forward", "if l1 <= ((one << 30) - 1) // wmax:", "<<", ">>", 0):
        "the bound becomes -1 // wmax = -1: " + _TO_EXACT,
    ("linear_forward", "if l1 <= ((one << 30) - 1) // wmax:", "//", "%", 0):
        "fit % max < max, and L1 below it bounds |S| by max**2 < 2**30: the fast path only "
        "takes fewer rows, each exact",
    ("linear_forward", "if bw == 2 and ba == 2 and wmax > 0:", "0", "1", 0):
        "at max |W| = 1 " + _TO_EXACT,
    ("linear_forward", "1, ba, n_out - fast_end, 1, n_in, sh, lo, hi, 0)", "1", "2", 1):
        "cols = 2 with yc = ac = bc = 0: the same sum is stored twice to the same place",
    ("linear_forward", "if fast_end < n_out:  # the general loop: the rows left, any widths, "
     "the int32 pair", "<", "<=", 0): "at fast_end = n_out dot_rows gets rows = 0: it stores "
     "nothing",
    ("linear_backward", "one = 1", "1", "0", 0):
        "one = 0: fit = -1 and s32 = 0; no fast path runs (L1 <= -1 // max never holds), and "
        "s32 is read only in dW's fast path",
    ("linear_backward", "fit = (one << 30) - 1", "<<", ">>", 0):
        "fit = -1: no fast path runs (L1 <= -1 // max never holds): " + _TO_EXACT,
    **{("linear_backward", "if bw == 2 and bg == 2 and wmax > 0:", "2", "3", k): _TO_EXACT
       for k in (0, 1)},
    **{("linear_backward", "if bw == 2 and bg == 2 and wmax > 0:", tok, rep, 0):
       "at max |W| = 0 l1_max is 0: only all-zero rows of dy take the fast path, whose sums "
       "are 0 on either path" for tok, rep in ((">", ">="), ("0", "-1"))},
    ("linear_backward", "fast = 1 if l1 <= l1_max else 0", "1", "2", 0):
        "fast is only tested for truth",
    ("linear_backward", "fast = 1 if l1 <= l1_max else 0", "<=", "<", 0): _TO_EXACT,
    ("linear_backward", "d = (pdy16[o] ^ 0x8000) - 0x8000", "-", "+", 0): _OVERESTIMATE,
    ("linear_backward", "d = (pdy16[k] ^ 0x8000) - 0x8000", "-", "+", 0): _OVERESTIMATE,
    ("linear_backward", "t_dx = T if with_dx != 0 else 0  # rows of dx to compute", "0", "-1",
     1): "range(-1) is empty as range(0) is: no row of dx either way",
    # beyond the every-4 sample, each emulated as _CHORD_START says
    **{("adam_update", line, tok, rep, k): _CHORD_START for line, tok, rep, k in (
        ("if vn >= 1 << 20:", ">=", ">", 0),
        ("if vn >= 1 << 20:", "<<", ">>", 0),
        ("if vn >= 1 << 20:", "20", "19", 0),
        ("vn >>= 12", "12", "11", 0),
        ("if vn >= 1 << 14:", ">=", ">", 0),
        ("if vn >= 1 << 14:", "1", "0", 0),
        ("if vn >= 1 << 14:", "14", "13", 0),
        ("s2 += 3", "3", "4", 0),
        ("if vn >= 1 << 10:", "1", "2", 0),
        ("if vn >= 1 << 10:", "10", "11", 0),
        ("vn >>= 4", "4", "3", 0),
        ("if vn >= 1 << 8:", ">=", ">", 0),
        ("if vn >= 1 << 8:", "1", "0", 0),
        ("if vn >= 1 << 8:", "8", "7", 0),
        ("s2 += 1", "1", "2", 0),
        ("if vn >= 192:", "192", "193", 0),
        ("root = ((vn * 137) >> 8) + 119", "137", "136", 0),
        ("root = ((vn * 137) >> 8) + 119", "119", "120", 0),
        ("elif vn >= 128:", "128", "129", 0),
        ("root = ((vn * 163) >> 8) + 100", "163", "164", 0),
        ("root = ((vn * 163) >> 8) + 100", "8", "7", 0),
        ("root = ((vn * 163) >> 8) + 100", "100", "99", 0),
        ("elif vn >= 96:", "96", "95", 0),
        ("root = ((vn * 194) >> 8) + 84", "194", "193", 0),
        ("root = ((vn * 194) >> 8) + 84", "8", "7", 0),
        ("root = ((vn * 230) >> 8) + 71", "230", "231", 0),
        ("root = ((vn * 230) >> 8) + 71", "8", "9", 0),
        ("root = ((vn * 230) >> 8) + 71", "71", "70", 0),
        ("if vn >= 1 << 20:", "1", "2", 0),
        ("if vn >= 1 << 20:", "20", "21", 0),
        ("vn >>= 12", "12", "13", 0),
        ("s2 = 6", "6", "7", 0),
        ("if vn >= 1 << 14:", "1", "2", 0),
        ("if vn >= 1 << 14:", "14", "15", 0),
        ("vn >>= 6", "6", "5", 0),
        ("if vn >= 1 << 10:", ">=", ">", 0),
        ("if vn >= 1 << 10:", "1", "0", 0),
        ("if vn >= 1 << 10:", "10", "9", 0),
        ("s2 += 2", "2", "3", 1),
        ("if vn >= 1 << 8:", "1", "2", 0),
        ("if vn >= 1 << 8:", "8", "9", 0),
        ("vn >>= 2", "2", "1", 0),
        ("if vn >= 192:", ">=", ">", 0),
        ("if vn >= 192:", "192", "191", 0),
        ("root = ((vn * 137) >> 8) + 119", "8", "9", 0),
        ("root = ((vn * 137) >> 8) + 119", "119", "118", 0),
        ("elif vn >= 128:", "128", "127", 0),
        ("root = ((vn * 163) >> 8) + 100", "8", "9", 0),
        ("root = ((vn * 163) >> 8) + 100", "100", "101", 0),
        ("elif vn >= 96:", ">=", ">", 0),
        ("root = ((vn * 194) >> 8) + 84", "194", "195", 0),
        ("root = ((vn * 194) >> 8) + 84", "8", "9", 0),
        ("root = ((vn * 194) >> 8) + 84", "84", "83", 0),
        ("root = ((vn * 230) >> 8) + 71", "230", "229", 0),
        ("root = ((vn * 230) >> 8) + 71", "8", "7", 0),
        ("root = (root << s2) >> 4  # >= 4", "4", "3", 0),
    )},
    **{("adam_update", line, tok, rep, k): "only moves the value the correction loops start "
       "from (emulated: within [0, 46340]); the loops end at floor(sqrt(vs)) from any such "
       "value, the loop up where it lands below" for line, tok, rep, k in (
        ("root = (root + vs // root) >> 1", "+", "-", 0),
        ("root = (root + vs // root) >> 1", "1", "2", 0),
        ("root = (root + vs // root) >> 1", "//", "%", 0),
    )},
    ("adam_update", "root -= 1", "1", "2", 0): "the loop down may step one past "
        "floor(sqrt(vs)); the loop up then adds it back (emulated)",
    **{("adam_update", line, tok, rep, k): "the loop up never runs: one integer Newton step "
       "from a positive start is at least floor(sqrt(vs)), and the loop down ends on it"
       for line, tok, rep, k in (
        ("while (root + 1) * (root + 1) <= vs:", "1", "2", 1),
        ("root += 1", "+=", "-=", 0),
        ("while (root + 1) * (root + 1) <= vs:", "<=", "<", 0),
        ("root += 1", "1", "2", 0),
    )},
    ("linear_backward", "l1_max = fit // wmax if wmax > 0 else 0  # the largest L1 norm of "
     "dy[t] the bound allows", "0", "1", 0): "at max |W| = 1 l1_max is 0: " + _TO_EXACT,
    ("linear_backward", "l1_max = fit // xmax if xmax > 0 else 0  # the same for dy's columns",
     "0", "1", 0): "at max |x| = 1 l1_max is 0: " + _TO_EXACT,
    ("linear_backward", "fast = 1 if l1 <= l1_max else 0", "1", "0", 0):
        "fast is always 0: " + _TO_EXACT,
    ("linear_backward", "dot_rows(dx, t * n_in, 1, 0, bg, w, 0, 1, 0, n_in, bw, dy, yrow, 0, 0, "
     "1, bg, n_in, 1,", "1", "2", 3):
        "cols = 2 with yc = ac = bc = 0: the same sum is stored twice to the same place",
    ("linear_backward", "xmax = int(abs_max(x, T * n_in, 2)) if bg == 2 and ba == 2 else 0",
     "0", "-1", 0): "xmax is read only when it is positive",
    ("linear_backward", "if xmax > 0:", "0", "1", 0): "at max |x| = 1 " + _TO_EXACT,
    ("linear_backward", "n_in, 1, T, sh_w, plo, phi, 1)", "1", "2", 1):
        "add is only tested for truth",
    ("adam_update", "c = 0 - kahan_half", "-", "+", 0):
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
    ("dot_rows", "if bb == 2 and ba == 2:  # int16 words: no width tests, byte addresses",
     "2", "3", 1): _BOTH_EXACT,
    **{("dot_rows", "elif bb == 4:", "4", rep, 0): _BB_NOT_4 for rep in ("3", "5")},
    ("dot_rows", "elif q < lo:", "<", "<=", 0): _AT_LIMIT,
    ("dot_rows", "if q > hi:", ">", ">=", 0): _AT_LIMIT,
    **{("abs_max", "v = (p16[i] ^ 0x8000) - 0x8000", "0x8000", rep, k): _MAX_LESS_1
       for rep in ("32767", "32769") for k in (0, 1)},
    **{("abs_max", "v = (p8[i] ^ 0x80) - 0x80", "0x80", rep, k): _MAX_8BIT
       for rep in ("127", "129") for k in (0, 1)},
    ("abs_max", "elif nb == 1:", "==", "!=", 0): _MAX_8BIT,
    ("abs_max", "elif nb == 1:", "1", "0", 0): _MAX_8BIT,
    ("abs_max", "if v < 0:", "0", "-1", 0):
        "only v = -1 is left negative: the max changes only where it is 1 from -1s alone, to "
        "0, which fails the fast paths' max > 0 (the exact path, the same integers)",
    ("abs_max", "v = (p32[i] ^ s32) - s32", "-", "+", 0): _ABS_32,
    ("abs_max", "s32 = one << 31", "<<", ">>", 0): _ABS_32,
    ("abs_max", "one = 1", "1", "0", 0): "one only makes s32: " + _ABS_32,
    ("abs_max", "big = 0", "0", "-1", 0):
        "all-zero words give -1 instead of 0, and both fail the fast paths' max > 0",
    ("abs_max", "big = 0", "0", "1", 0):
        "all-zero words give 1: their fast path sums zeros, the same integers as the exact one",
    ("narrow", "bad += 1", "1", "0", 0):
        "the count only refuses a checkpoint with values outside its policy (restore.py), "
        "which the host refuses too (checkpoint.check_run_state) and never writes",
    ("block_encode", "big = 0", "0", "1", 0):
        "big only sets the block's shift: for a block of zeros 1 and 0 both give kj = 0 "
        "(tbits >= 3)",
    ("block_encode", "kj = nbits - tbits if nbits > tbits else 0", ">", ">=", 0):
        "at nbits = tbits, nbits - tbits is 0, the else value",
    ("adam_update", "if d < 0 and w > hi + d:", "0", "1", 0):
        "for d = 0 the test w > hi never holds: w is a value of the store's format",
    ("adam_update", "elif vi < 0:", "0", "1", 0): "at vi = 0 both store 0",
    **{("relu_forward", f"py{b}[i] = v if v > 0 else 0", ">", ">=", 0): "at v = 0 both store 0"
       for b in (8, 16)},
    ("linear_forward", "if l1 <= ((one << 30) - 1) // wmax:", "1", "0", 1): _FIT_2_30,
    ("linear_forward", "one = 1", "1", "0", 0):
        "one = 0 makes the bound -1 // wmax = -1: " + _TO_EXACT,
    ("linear_forward", "if bw == 2 and ba == 2 and wmax > 0:", "2", "3", 0): _TO_EXACT,
    ("linear_forward", "if bw == 2 and ba == 2 and wmax > 0:", "2", "3", 1): _TO_EXACT,
    ("linear_forward", "l1 = 0", "0", "1", 0): "L1 one too large: " + _TO_EXACT,
    ("linear_backward", "l1_max = fit // wmax if wmax > 0 else 0  # the largest L1 norm of "
     "dy[t] the bound allows", "0", "1", 1): "l1_max is read only when wmax > 0",
    ("linear_backward", "l1_max = fit // xmax if xmax > 0 else 0  # the same for dy's columns",
     "0", "1", 1): "l1_max is read only when xmax > 0",
    ("linear_forward", "if l1 <= ((one << 30) - 1) // wmax:", "<=", "<", 0): _TO_EXACT,
    ("linear_forward", "if l1 <= ((one << 30) - 1) // wmax:", "30", "29", 0): _TO_EXACT,
    ("linear_forward", "if l1 <= ((one << 30) - 1) // wmax:", "1", "2", 1): _TO_EXACT,
    ("linear_backward", "fit = (one << 30) - 1", "1", "0", 0): _FIT_2_30,
    ("linear_backward", "fit = (one << 30) - 1", "30", "29", 0): _TO_EXACT,
    ("linear_backward", "fit = (one << 30) - 1", "1", "2", 0): _TO_EXACT,
    **{("linear_backward", f"l1_max = fit // {m} if {m} > 0 else 0  # {why}", "//", "%", 0):
       "fit % max < max, and L1 below it bounds |S| by max**2 < 2**30: the fast path only "
       "takes fewer rows, each exact" for m, why in (
           ("wmax", "the largest L1 norm of dy[t] the bound allows"),
           ("xmax", "the same for dy's columns"))},
    **{("linear_backward", "l1 += d if d >= 0 else 0 - d", tok, rep, 0):
       "at d = 0, 0 - d is 0 either way" for tok, rep in (("0", "1"), (">=", ">"))},
    ("linear_backward", "l1 += d if d >= 0 else 0 - d", "0", "1", 1):
        "L1 larger by one per negative value: " + _TO_EXACT,
    ("linear_backward", "l1 += d if d >= 0 else 0 - d", "0", "-1", 1): _L1_LESS,
    ("linear_forward", "l1 += xi if xi >= 0 else 0 - xi", "0", "1", 1):
        "L1 larger by one per negative value: " + _TO_EXACT,
    ("linear_forward", "l1 = 0", "0", "-1", 0): _L1_LESS,
    ("linear_backward", "l1 = 0", "0", "1", 0): "L1 one too large: " + _TO_EXACT,
    ("linear_backward", "l1 = 0", "0", "-1", 0): _L1_LESS,
    **{("linear_backward", f"l1_max = fit // {m} if {m} > 0 else 0  # {why}", "0", "-1", 1):
       f"l1_max is read only when {m} > 0" for m, why in (
           ("wmax", "the largest L1 norm of dy[t] the bound allows"),
           ("xmax", "the same for dy's columns"))},
    **{("linear_backward", "xmax = int(abs_max(x, T * n_in, 2)) if bg == 2 and ba == 2 else 0",
        "2", "3", k): "xmax = 0: " + _TO_EXACT for k in (1, 2)},
    **{("linear_forward",
        "dot_rows(y, yrow + fast_end, 1, 0, by, w, fast_end * n_in, "
        "n_in, 0, 1, bw, x, xrow, 0, 0,", "0", rep, k): _COLS_ONE
       for k in (0, 1, 3) for rep in ("1", "-1")},
    **{("linear_backward",
        "dot_rows(dx, t * n_in, 1, 0, bg, w, 0, 1, 0, n_in, bw, dy, "
        "yrow, 0, 0, 1, bg, n_in, 1,", "0", rep, k): _COLS_ONE
       for k in (0, 2, 4) for rep in ("1", "-1")},
    **{("linear_backward",
        "dot_rows(dw, (o - o0) * n_in, 1, 0, 4, x, 0, 1, 0, n_in, "
        "ba, dy, o, 0, 0, n_out, bg,", "0", rep, k): _COLS_ONE
       for k in (1, 3, 5) for rep in ("1", "-1")},
    **{("attention_forward",
        "dot_rows(srow, 0, 1, 0, 4, k, c0, C, 0, 1, ba, q, "
        "qrow + c0, 0, 0, 1, ba, t + 1, 1, HS,", "0", rep, k): _COLS_ONE
       for k in (1, 3, 6) for rep in ("1", "-1")},
    **{("attention_forward",
        "dot_rows(out, qrow + c0, 1, 0, ba, srow, 0, 0, 0, 1, 4, v, "
        "c0, 1, 0, C, ba, HS, 1, t + 1,", "0", rep, k): _COLS_ONE
       for k in (1, 4, 6) for rep in ("1", "-1")},
    **{("linear_backward", f"d = (pdy16[{i}] ^ 0x8000) - 0x8000", "0x8000", rep, 0): _L1_LESS
       for i in "ok" for rep in ("32767", "32769")},
    ("linear_backward", "l1 += d if d >= 0 else 0 - d", "0", "-1", 0): _L1_LESS_2,
    ("linear_forward", "l1 += xi if xi >= 0 else 0 - xi", "0", "-1", 0): _L1_LESS_2,
    ("relu_forward", "py8[i] = v if v > 0 else 0", "0", "-1", 0): "at v = 0 both store 0",
    ("relu_forward", "py16[i] = v if v > 0 else 0", "0", "-1", 0): "at v = 0 both store 0",
    ("linear_backward", "if bw == 2 and bg == 2 and wmax > 0:", "0", "1", 0):
        "at max |W| = 1 " + _TO_EXACT,
    **{("linear_backward", "d = (pdy16[o] ^ 0x8000) - 0x8000", "0x8000", rep, 1): _L1_LESS
       for rep in ("32767", "32769")},
    **{("linear_backward", "d = (pdy16[k] ^ 0x8000) - 0x8000", "0x8000", rep, 1): _L1_LESS
       for rep in ("32767", "32769")},
    ("linear_forward", "l1 += xi if xi >= 0 else 0 - xi", "0", "-1", 1): _L1_LESS,
    ("linear_forward", "l1 += xi if xi >= 0 else 0 - xi", ">=", ">", 0):
        "at xi = 0, 0 - xi is 0 either way",
})
