"""The firmware mutants no reachable input tells apart from the original (equivalent
mutants), each with a one-line argument why. qgpt/conformance/mutants.py reads it;
a survivor not listed here is a gap in the golden cases.

A key names the mutant without its line number, so that it survives edits and
moved code: (function, the source line stripped, the token, its replacement, how
often the token's text occurs in the line before it; ">>" counts for ">").

The entries for the kernels issue 15's speed work wrote are in equivalent_fast_paths.py.
"""

from qgpt.conformance.equivalent_fast_paths import (
    _AT_LIMIT,
    _SH_ZERO,
    FAST_PATHS,
)

# adam.isqrt: Newton's iteration from above returns floor(sqrt(n)) from any start at or
# above the root (the isqrt op's cases call it for every n from 0 to 299 and beyond).
_ISQRT_START = ("the start stays a number at or above sqrt(n), and Newton's iteration from "
                "above returns floor(sqrt(n)) from any such start")
_KERNEL_SCRATCH = ("the kernel's first two parameters are scratch (kept in registers): it "
                   "assigns each before it reads it, so the value passed is never read")
_ADAM_SCRATCH = ("adam_update's first two parameters (vi, root) are scratch: each pass of "
                 "its loop sets them before it reads them, so the value passed is never read")
# exp(z) is 0 in the formula itself below z = -11.8 (ip <= -17: rnd(val < 2**16, 17) = 0)
_EXP_ZERO = ("moves exp's cut-off at -16 by a step; the formula gives 0 there already "
             "(below -11.8: ip <= -17 and rnd(val < 2**16, 17) = 0), checked for every z")
_EXP_HALF = ("the interpolation's ties (14 over every z12) are all absorbed by the final "
             "rnd(val, -ip): tests/test_firmware_ops.py checks every z12")
_RSQRT_TOP = ("only a = 2**30 - 1 (or - 2) is shifted down once more and comes back as "
              "a - (a & 3), the same k: isqrt gives 32767 for all of them")

# rsqrt's shift: ms >= eps = 1e-5 (in fm bits) bounds 1/sqrt(ms) by 316 < 2**9, so with M
# in (2**14, 2**15] sh >= 6 for every acts format (min over all of them: 6, q1.7)
_PRECHECK = ("at hh = +-lim (or one beyond) the rounding formula gives +-2**30 plus at most "
             "2**(16 - s), within int32 and beyond the limit (A, G, L: at most 2**23), so it "
             "saturates the same")
_DEAD_SH16 = ("the s >= 16 branch is dead: the shift is Fa or 15 (probabilities), and acts "
              "have at most 15 fractional bits")
_SMALL_SUM = ("this sum is at most 4 * 2**30 (HS = 4 products of 16-bit words) or (sum of "
              "probabilities) * 2**15: with either limit the formula stays within int32 "
              "and saturates the same")
_ONLY_COUNTS = ("narrow's lo and hi only count values outside them (a checkpoint check), "
                "a count gather ignores")
_S_SMALL = ("ln_q16's argument is a softmax denominator S < 27 * 2**15 < 2**20, so n <= 19 "
            "and only the left shift s << (29 - n) is taken")
_NEVER_READ = "the constant is read by no firmware code (model.py uses _V, _N of layout.py)"
_NEVER_READ_POLICY = "the constant is read by no code of firmware/policy.py or elsewhere"
_RELAXED = ("it lets the device accept a narrower class than the host's rule (section 3.4), "
            "which refuses such a policy before any device sees it; what the host accepts "
            "the device still accepts")
_BANNER = ("word_bits is only printed in the run's banner line (viper=64), which no "
           "result depends on")

_PARAMS_TABLE = ("read by no firmware code: tests/test_firmware_ops.py compares the value "
                 "with qgpt/params.py's")
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
    ("embedding_backward", "if d > hi:", ">", ">=", 0): _AT_LIMIT,
    ("embedding_backward", "elif d < lo:", "<", "<=", 0): _AT_LIMIT,
    ("embedding_forward", "if v > hi:", ">", ">=", 0): _AT_LIMIT,
    ("embedding_forward", "elif v < lo:", "<", "<=", 0): _AT_LIMIT,
    ("embedding_forward", "rs = sh if sh > 0 else 0", ">", ">=", 0):
        "at sh = 0, sh is 0, the else value",
    ("embedding_forward", "ls = 0 - sh if sh < 0 else 0", "<", "<=", 0):
        "at sh = 0, 0 - sh is 0, the else value",
    **{("linear_forward", line, tok, rep, 0): _AT_LIMIT for line, tok, rep in (
        ("if u < lo:", "<", "<="), ("if v < lo:", "<", "<="), ("if u > hi:", ">", ">="),
        ("if v > hi:", ">", ">="))},
    ("adam_update", "m_lo = 0 - m_hi", "0", "1", 0):
        "gm = -m_hi gives -m_hi << m_ls = -2**30, the saturation value",
    ("adam_update", "gm = 0 - big", "0", "-1", 0):
        "gm is read only as mul15(gm, 4915), the same for -2**30 - 1 and -2**30",
    ("adam_update", "if mi < 0 - hm:", "<", "<=", 0): _AT_LIMIT,
    ("adam_update", "gs_ls = 0 - sh_s if sh_s < 0 else 0", "0", "1", 1):
        "at sh_s = 0, 0 - sh_s is 0, the else value",
    ("adam_update", "m_ls = 0 - sh_m if sh_m < 0 else 0", "0", "1", 1):
        "at sh_m = 0, 0 - sh_m is 0, the else value",
    ("adam_update", "if c > _KAHAN_HALF - 1:", "1", "2", 0):
        "c = 127 is then set to _KAHAN_HALF - 1 = 127: itself",
    ("adam_update", "small_sh = e - 15 if e > 15 else 0", ">", ">=", 0):
        "at e = 15, e - 15 is 0, the else value",
    ("narrow", "bad += 1", "1", "0", 0):
        "the count only refuses a checkpoint with values outside its policy (restore.py), "
        "which the host refuses too (checkpoint.check_run_state) and never writes",
    ("block_encode", "big = 0", "0", "1", 0):
        "big only sets the block's shift: for a block of zeros 1 and 0 both give kj = 0 "
        "(tbits >= 3)",
    ("adam_update", "elif gs < gs_lo:", "<", "<=", 0):
        "gs = gs_lo gives gs_lo << gs_ls = -32768, the saturation value (gs_ls <= 15: "
        "Fh <= 15, Fp >= 0)",
    ("adam_update", "vi = ((vi >> 15) * _ADAM_K2 + (((vi & 0x7FFF) * _ADAM_K2 + 16384) >> 15)",
     "16384", "16385", 0):
        "it rounds differently only if (v mod 2**15) * 32440 = 2**14 - 1 mod 2**15, and "
        "that product is a multiple of 8",
    ("adam_update", "if d < 0 and w > hi + d:", "0", "1", 0):
        "for d = 0 the test w > hi never holds: w is a value of the store's format",
    ("add_forward", "elif v < lo:", "<", "<=", 0): _AT_LIMIT,
    ("cross_entropy_backward", "if d > ghi:", ">", ">=", 0): _AT_LIMIT,
    ("cross_entropy_backward", "elif d < glo:", "<", "<=", 0): _AT_LIMIT,
    ("add_forward", "if v > hi:", ">", ">=", 0): _AT_LIMIT,
    **{("linear_backward", "big = int(abs_max(0, 0, x, T * n_in, 2)) if bg == 2 and ba == 2 "
        "and not add_dw else 0", tok, rep, k): "big <= 0 (abs_max of no 16-bit width, or no "
       "bound): l1_max = -1 and every row takes the exact path (dot_rows's int32 pair), the "
       "same integers"
       for tok, rep, k in (("2", "3", 0), ("2", "1", 0), ("2", "3", 1), ("2", "3", 2),
                           ("0", "-1", 2))},
    ("rmsnorm_forward", "if v > hi:", ">", ">=", 0): _AT_LIMIT,
    ("rmsnorm_forward", "if v < lo:", "<", "<=", 0): _AT_LIMIT,
    ("rmsnorm_forward", "while a > 0x3FFFFFFF:", ">", ">=", 0): _RSQRT_TOP,
    ("rmsnorm_forward", "while a > 0x3FFFFFFF:", "0x3FFFFFFF", "1073741822", 0): _RSQRT_TOP,
    ("rmsnorm_backward", "if ti > ghi:", ">", ">=", 0): _AT_LIMIT,
    ("rmsnorm_backward", "if ti < glo:", "<", "<=", 0): _AT_LIMIT,
    ("rmsnorm_forward", "for ph in range(2):  # 0: the sum, 1: y (one loop shares x's loads: -89 "
     "bytes xtensawin)", "2", "3", 0):
        "a third pass (ph = 2) sums nothing, so it takes the same (M, sh) from the same sums "
        "and stores the same y again",
    ("rmsnorm_backward", "for ph in range(2):", "2", "3", 0):
        "a third pass (ph = 2) sums nothing, so it takes the same c from the same sums and "
        "stores the same dx again",
    ("attention_backward", "if diff > ghi:", ">", ">=", 0): _AT_LIMIT,
    ("attention_backward", "if diff < glo:", "<", "<=", 0): _AT_LIMIT,
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
    ("adam_update", "if mi < 0:", "0", "1", 0):
        "at mi = 0 both branches give a = 0, so r = 0 and delta = 0 whichever alpha's sign",
    ("adam_update", "if mi < 0:", "<", "<=", 0):
        "at mi = 0 both branches give a = 0, so r = 0 and delta = 0 whichever alpha's sign",
    ("adam_update", "if w > hi:", ">", ">=", 0): _AT_LIMIT,
    ("adam_update", "if w < lo:", "<", "<=", 0): _AT_LIMIT,
    ("adam_update", "if c > _KAHAN_HALF - 1:", ">", ">=", 0): _AT_LIMIT,
    ("adam_update", "if c < 0 - _KAHAN_HALF:", "0", "1", 0):
        "c < -127 holds for c = -128 only (c = t - (w << 8) >= -128 unless w saturated "
        "below), which is set to -128: itself",
    ("adam_update", "if c < 0 - _KAHAN_HALF:", "<", "<=", 0): _AT_LIMIT,
    ("adam_update", "if d < 0 and w > hi + d:", ">", ">=", 0):
        "at w = hi + d, w - d is hi either way",
    ("narrow", "bad += 1", "+=", "-=", 0):
        "the count is only tested for nonzero (restore.py) or ignored (blockadam.gather)",
    ("narrow", "bad += 1", "1", "2", 0):
        "the count is only tested for nonzero (restore.py) or ignored (blockadam.gather)",
    ("block_encode", "if x < 0:", "0", "1", 0): "at x = 0, 0 - x is 0 either way",
    ("block_encode", "if x < 0:", "<", "<=", 0): "at x = 0, 0 - x is 0 either way",
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
    ("adam_update", "elif gi < m_lo:", "<", "<=", 0):
        "gm = m_lo gives m_lo << m_ls = -2**30, the saturation value",
    ("adam_update", "if gi > m_hi:", ">", ">=", 0):
        "gm = m_hi gives m_hi << m_ls = 2**30, the saturation value",
    ("adam_update", "if d < 0 and w > hi + d:", "<", "<=", 0):
        "for d = 0 the test w > hi never holds: w is a value of the store's format",
    ("block_encode", "if end > last:", ">", ">=", 0): "for end = last both give last",
    ("block_decode", "if end > last:", ">", ">=", 0): "for end = last both give last",
    ("block_encode", "if x > big:", ">", ">=", 0): "big, the maximum, is the same",
    ("gather", "K.block_decode(0, 0, vw, mdl.v, vk, a, size, n_v, bv, 1)", "1", "2", 0):
        "block_decode tests sq only for truth",
    ("gather", "K.block_encode(0, 0, mdl.v, vk, vw, a, size, n_v, bits_v, bv, 1)", "1", "2", 0):
        "block_encode tests sq only for truth",
    ("gather", "K.narrow(0, 0, mdl.m, a, mw, size, 0 - hm, hm, bm)", "0", "-1", 2): _ONLY_COUNTS,
    ("gather", "K.narrow(0, 0, mdl.m, a, mw, size, 0 - hm, hm, bm)", "0", "1", 2): _ONLY_COUNTS,
    ("gather", "K.narrow(0, 0, mdl.m, a, mw, size, 0 - hm, hm, bm)", "-", "+", 0): _ONLY_COUNTS,
    ("gather", "K.narrow(0, 0, mdl.v, a, vw, size, 0, hv, bv)", "0", "1", 2): _ONLY_COUNTS,
    ("gather", "K.narrow(0, 0, mdl.v, a, vw, size, 0, hv, bv)", "0", "-1", 2): _ONLY_COUNTS,
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
    ("piece", "return chunk if left >= _CHUNK else chunk[: 4 * left]", ">=", ">",
     0): "for left = 32 the slice of all 128 bytes holds the same bytes as the chunk",
    ("piece", "K.widen(0, 0, chunk, buf, k * _CHUNK, _CHUNK if left > _CHUNK else left, nb)",
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
    # firmware/params.py: conform_ops reads its VOCAB, N_EMBD and N_HEAD; the rest is the
    # table tests/test_firmware_ops.py compares with qgpt/params.py (a run takes its
    # offsets from layout.py)
    **{("", line, tok, rep, 0): _PARAMS_TABLE for line, tok in (
        ("BLOCK = 16  # T <= BLOCK", "16"), ("HEAD_DIM = 4  # HS", "4"),
        ("MLP_HIDDEN = 64", "64"), ("N_PARAMS = 4192", "4192"))
       for rep in (str(int(tok) - 1), str(int(tok) + 1))},
    # blockadam.gather's bv for adam_update, which tests it only as bv == 4 (the unsplit
    # mul15) and bv < 0 (v's roots for block_encode)
    **{("gather", "hm, hv, bs, -4 if n_v else 4)", "4", rep, k): why for rep in ("3", "5")
       for k, why in ((0, "any bv < 0 other than 4 reads as -4 does: roots, no unsplit"),
                      (1, "bv = 3 or 5 is not 4 and not below 0: the general mul15 path "
                          "instead of the unsplit one, which gives the same integers"))},
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
    ("train_step", "key = prng.key(seed, prng.STREAM_ROUND, step) if schedule[2] else 0",
     "0", "1", 0): "adam_update reads the key only when it rounds stochastically",
    ("train_step", "key = prng.key(seed, prng.STREAM_ROUND, step) if schedule[2] else 0",
     "0", "-1", 0): "adam_update reads the key only when it rounds stochastically",
    ("weight_backward", "if o1 > n_out:", ">", ">=", 0): "for o1 = n_out both give o1 = n_out",
    ("weight_backward", "if blk[7]:", "7", "6", 0):
        "blk[6], the slots' counts, is empty exactly when blk[7] = U is 0 (layout.py gives "
        "U > 0 at least one slot)",
    ("word_bits", "one = 1", "1", "0", 0): _BANNER,
    ("embedding_backward", "rs = sh if sh > 0 else 0", "0", "-1", 0): _SH_ZERO,
    ("embedding_backward", "if w > hi:", ">", ">=", 0): "w = hi is stored as hi either way",
    ("gather", "s = -1", "1", "2", 0): "s = -1 only marks 'no slot yet', tested as s < 0",
    ("isqrt", "if n < 2:", "2", "1", 0): "for n = 1 the loop returns 1 too",
    ("isqrt", "k = 1", "1", "2", 0): _ISQRT_START,
    ("isqrt", "k = 1", "1", "0", 0): _ISQRT_START,
    ("isqrt", "while n >> (k + k + 14):  # n >= 4**(k + 7)", "14", "15", 0): _ISQRT_START,
    ("isqrt", "while n >> (k + k + 14):  # n >= 4**(k + 7)", "14", "13", 0): _ISQRT_START,
    ("isqrt", "k += 8", "8", "9", 0): _ISQRT_START,
    ("isqrt", "k += 8", "8", "7", 0): _ISQRT_START,
    ("isqrt", "k += 1", "1", "2", 0): _ISQRT_START,
    ("isqrt", "x = 1 << k  # x * x > n >= x * x / 4", "1", "2", 0): _ISQRT_START,
    ("alpha_at", "s = min(schedule[1], 30)", "1", "2", 0):
        "s = min(schedule[2], 30) is 0 or 1 (stochastic): a common power of two s <= "
        "min(alpha_frac, 30) too, which leaves the quotient as it is",
    ("alpha_at", "s = min(schedule[1], 30)", "30", "29", 0):
        "any common power of two s <= min(alpha_frac, 30) leaves the quotient as it is",
    ("alpha_at", "s = min(schedule[1], 30)", "30", "31", 0):
        "s differs only for alpha_frac >= 31, i.e. lr below 2**-16 (45 - bitlen(lr_q30)): "
        "no run's",
    ("", "_EXP_ZERO_BELOW = const(16)  # exp(z) = 0 for z <= -16", "16", "15", 0): _EXP_ZERO,
    ("", "_EXP_ZERO_BELOW = const(16)  # exp(z) = 0 for z <= -16", "16", "17", 0): _EXP_ZERO,
    ("softmax", "zero_at = 0 - (_EXP_ZERO_BELOW << f)", "0", "1", 0): _EXP_ZERO,
    ("softmax", "zero_at = 0 - (_EXP_ZERO_BELOW << f)", "0", "-1", 0): _EXP_ZERO,
    ("softmax", "if d > zero_at:  # exp_neg(d, f), inlined", ">", ">=", 0): _EXP_ZERO,
    ("", "_ROUND_STOCHASTIC = const(2)", "2", "1", 0):
        "never read: adam_update tests the mode against nearest and floor; stochastic is "
        "the else branch",
    ("", "_ROUND_STOCHASTIC = const(2)", "2", "3", 0):
        "never read: adam_update tests the mode against nearest and floor; stochastic is "
        "the else branch",
    ("softmax", "rem = (w & 0xFFFFF) >> 5", "0xFFFFF", "1048574", 0):
        "the mask's bit 0 is shifted out by >> 5 either way",
    ("softmax", "e = lo + (((e2[idx + 1] - lo) * rem + 16384) >> 15)", "16384", "16385", 0):
        _EXP_HALF,
    ("softmax", "e = lo + (((e2[idx + 1] - lo) * rem + 16384) >> 15)", "16384", "16383", 0):
        _EXP_HALF,
    ("softmax", "rs12 = s12 if s12 > 0 else 0", ">", ">=", 0):
        "for s12 = 0 both branches give rs12 = 0",
    ("softmax", "rs12 = s12 if s12 > 0 else 0", "0", "-1", 0):
        "s12 > -1 is s12 >= 0: for s12 = 0 both branches give rs12 = 0",
    ("softmax", "for j in range(off + 1, end):", "1", "0", 0):
        "the maximum over the row with its first element compared twice is the same",
    ("softmax", "if zj > mx:", ">", ">=", 0): "an equal element leaves the same maximum",
    ("sample", "tok[0] = BOS", "0", "1", 0):
        "tok[0] holds BOS already (training writes it each step, sampling never writes "
        "index 0): writing BOS to tok[1] is overwritten by the first token",
    ("sample", "tok[0] = BOS", "0", "-1", 0):
        "tok[0] holds BOS already; tok[-1] (index BLOCK) is written before it is read",
    ("next_token", "z[j] = (get32(lg, row + j) * inv_t + 128) >> 8", "+", "-", 1):
        "(x - 128) >> 8 is (x + 128) >> 8 minus 1 for every x: every tempered logit moves "
        "by 1, and softmax does not change when a whole row moves",
    # round 4's leading scratch parameters (docs/BENCHMARKS.md, "Round 4"): every kernel
    # below assigns its first two parameters before it reads them, so the values passed
    # are never read
    **{(fn, line, "0", rep, k): _KERNEL_SCRATCH for rep in ("1", "-1") for k in (0, 1)
       for fn, line in (
        ("backward", "K.add_forward(0, 0, ga, ga, gc, 0, TC, gl, gh, bg)"),
        ("backward", "K.add_forward(0, 0, gb, gb, gc, 0, TC, gl, gh, bg)"),
        ("backward", "K.attention_backward(0, 0, gc, at, x4, gb, q, k, vv, probs, logits, T, _NH, "
         "sh_dp, sh_p,"),
        ("forward_position", "att(0, 0, at, probs, srow, q, k, vv, t, T, _NH, sh_s, lo_l, hi_l, "
         "Fl, sh_o, lo, hi, ba)"),
        ("backward", "K.cross_entropy_backward(0, 0, dh, logits, self.bufs[4], T, _V, sh_ce, gl, "
         "gh, bg)"),
        ("backward", "K.embedding_backward(0, 0, logits, probs, gb, self.tok, T, _C, sh_e, pl, "
         "ph, bg)"),
        ("backward", "K.relu_backward(0, 0, dh, h, 0, T * _M, bg, ba)"),
        ("backward", "K.rmsnorm_backward(0, 0, gb, ga, x0, rs0, T, _C, sh_c, fa, gl, gh, bg, ba)"),
        ("backward", "K.rmsnorm_backward(0, 0, gc, gb, x1, rs1, T, _C, sh_c, fa, gl, gh, bg, ba)"),
        ("backward", "K.rmsnorm_backward(0, 0, gc, gb, x3, rs3, T, _C, sh_c, fa, gl, gh, bg, ba)"),
        ("forward_position", "add(0, 0, x2, tmp, x0, t0 * _C, (t1 - t0) * _C, lo, hi, ba)"),
        ("forward_position", "add(0, 0, x4, tmp, x2, t0 * _C, (t1 - t0) * _C, lo, hi, ba)"),
        ("forward_position", "emb(0, 0, ga, wte, wpe, tok[t], t, _C, sh_emb, lo, hi, ba, bw)"),
        ("forward_position", "wm[j] = K.abs_max(0, 0, ws[j], off[j + 1] - off[j], bw)"),
        ("forward_position", "lin(0, 0, h, x3, fc1, t0, t1, _C, _M, sh, 0, hi, ba, ba, bw, "
         "wm[_FC1])"),
        ("forward_position", "lin(0, 0, k, x1, wk, t0, t1, _C, _C, sh, lo, hi, ba, ba, bw, "
         "wm[_WK])"),
        ("forward_position", "lin(0, 0, logits, x4, lm_head, t0, t1, _C, _V, shl, lo_l, hi_l, 4, "
         "ba, bw, wm[_LM_HEAD])"),
        ("forward_position", "lin(0, 0, q, x1, wq, t0, t1, _C, _C, sh, lo, hi, ba, ba, bw, "
         "wm[_WQ])"),
        ("forward_position", "lin(0, 0, tmp, at, wo, t0, t1, _C, _C, sh, lo, hi, ba, ba, bw, "
         "wm[_WO])"),
        ("forward_position", "lin(0, 0, tmp, h, fc2, t0, t1, _M, _C, sh, lo, hi, ba, ba, bw, "
         "wm[_FC2])"),
        ("forward_position", "lin(0, 0, vv, x1, wv, t0, t1, _C, _C, sh, lo, hi, ba, ba, bw, "
         "wm[_WV])"),
        ("forward_position", "rms(0, 0, x0, rs0, ga, t, _C, g, fm, eps, lo, hi, ba)"),
        ("forward_position", "rms(0, 0, x1, rs1, x0, t, _C, g, fm, eps, lo, hi, ba)"),
        ("forward_position", "rms(0, 0, x3, rs3, x2, t, _C, g, fm, eps, lo, hi, ba)"),
        ("gather", "K.block_decode(0, 0, mw, mdl.m, mk, a, size, n_m, bm, 0)"),
        ("gather", "K.block_decode(0, 0, vw, mdl.v, vk, a, size, n_v, bv, 1)"),
        ("gather", "K.block_encode(0, 0, mdl.m, mk, mw, a, size, n_m, bits_m, bm, 0)"),
        ("gather", "K.block_encode(0, 0, mdl.v, vk, vw, a, size, n_v, bits_v, bv, 1)"),
        ("gather", "K.copy32(0, 0, slots[s], lo - a, grad, lo - off, hi - lo)"),
        ("gather", "K.widen(0, 0, mw, mdl.m, a, size, bm)"),
        ("gather", "K.widen(0, 0, vw, mdl.v, a, size, bv)"),
        ("gather", "K.narrow(0, 0, mdl.m, a, mw, size, 0 - hm, hm, bm)"),
        ("gather", "K.narrow(0, 0, mdl.v, a, vw, size, 0, hv, bv)"),
        ("piece", "K.widen(0, 0, chunk, buf, k * _CHUNK, _CHUNK if left > _CHUNK else left, nb)"),
        ("weight_backward", "K.linear_backward(0, 0, dx, lg, dy, x, self.bufs[1][j], T, n_in, "
         "n_out, b[5],"),
        ("train_step", "ce(0, 0, lg, lg, t, _V, Fl), Fl)"),
        ("next_token", "K.softmax(0, 0, z, z, 0, _V, mdl.fwd[0])"),
        ("attention_forward", "sm(0, 0, srow, srow, 0, t + 1, f)"),
        ("linear_backward", "big = int(abs_max(0, 0, x, T * n_in, 2)) if bg == 2 and ba == 2 "
         "and not add_dw else 0"),
       )},
    # model.py's round-2 code (the sample `--modules model --every 4`)
    **{("", "_CHUNK = const(32)  # values widened at a time for hashes and checkpoints (N is "
        "a multiple)", "32", rep, 0): "model.py's _CHUNK is read by no code (the chunk's "
       "users, ckpt.py, restore.py, resume.py and layout.py, have their own)"
       for rep in ("33", "31")},
    **{(fn, line, "0", rep, k): _ADAM_SCRATCH for rep in ("1", "-1") for k in (0, 1)
       for fn, line in (
        ("weight_backward", "c[2] += adam(0, 0, store, m, v, g, blk[9], n, i, i, i, alpha, "
         "sh_m, sh_s, e, u,"),
        ("gather", "mdl.counts[2] += K.adam_update(0, 0, mdl.store, mw, vw, slots[s], "
         "comp, size, a, a,"))},
    **{("forward_position", "lin(0, 0, logits, x4, lm_head, t0, t1, _C, _V, shl, lo_l, hi_l, 4, "
        "ba, bw, wm[_LM_HEAD])", "4", rep, 1): "by = 3 or 5 is no width the kernels test for: "
       "linear_forward stores 16 bits only for by == 2, dot_rows 8 or 16 bits only for by "
       "== 1, 2 and adds only for by < 0; int32 logits either way" for rep in ("3", "5")},
    ("forward_position", "for j in range(_LM_HEAD, _FC2 + 1):", "1", "0", 0):
        "fc2's max |W| is never scanned and stays 0 (Model sets wmax to zeros, train_step "
        "raises no bound of 0): fc2's kernels always take the exact path, the same integers",
    ("forward_position", "wm[j] = K.abs_max(0, 0, ws[j], off[j + 1] - off[j], bw)", "-", "+", 0):
        "the scan runs on past W into the next tensors and the activations (at most 6,336 "
        "bytes past the weights, inside the state block: the activations alone take more), "
        "so the bound stays >= max |W| and only chooses the path",
}

# the speed work's kernels (dot_rows, fast paths, isqrt chords)
EQUIVALENT.update(FAST_PATHS)
