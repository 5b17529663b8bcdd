"""The firmware mutants no reachable input tells apart from the original (equivalent
mutants), each with a one-line argument why. qgpt/conformance/mutants.py reads it;
a survivor not listed here is a gap in the golden cases.

A key names the mutant without its line number, so that it survives edits and
moved code: (function, the source line stripped, the token, its replacement, how
often the token's text occurs in the line before it; ">>" counts for ">").
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

EQUIVALENT = {
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
