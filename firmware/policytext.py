"""The reasons of the precision policy's validity rule (docs/arithmetic.md 3.4) as text,
for policy.PolicyError's one line, `policy: REASON (rule N)`.

Imported only to say why a policy is refused: a run whose policy is valid never has
this text in memory (the policy's stage is the setup's fullest: firmware/README.md,
"Memory"). policy.py raises PolicyError(rule, code, class, format, values ...).
"""

# the reasons by code: c the class (or the config's key), n its format (the text given),
# x, y, z the numbers the reason names
REASONS = (
    "unknown class {c!r} (classes: {n})",  # 0: n the classes, listed
    "{c}={n}: not a format like q4.12",
    "{c}={n}: {x}-bit mantissas, want 4 to 16",
    "{c}={n}: blocks of {x}, want 8 to 1024",
    "{c}={n}: want qI.F with I >= 1 and F >= 0",
    "{c}={n}: {x} bits, {c} take {y} to {z}",  # 5
    "{c}={n}: {x} fractional bits, at most Fw + Fa = {y} (lm_head's shift)",
    "{c}={n}: {x} fractional bits, at most 2*Fa + 1 = {y} (the attention scores' shift)",
    "{c}={n}: {x} fractional bits, at most 16 (the loss)",
    "{c}={n}: {x} fractional bits, at most Fg + Fa = {y} (the weight gradient's shift)",
    "{c}={n}: {x} fractional bits, want an even number of at most 30",  # 10
    "{c}={n}: {x} fractional bits, at most 13 + Fv/2 = {y} (Adam's ratio shift)",
    "{c}={n}: {x} fractional bits, at least the weights' {y}",
    "{c}={n}: the update would shift by {x} bits with lr_q30 {y} (want 0 to 30)",
    "{c}={n} with rounding=kahan: kahan keeps its own compensation below the weights; "
    "drop one",
)


def reason(code, c, n, x=None, y=None, z=None):
    """The text of reason `code` (REASONS) for the class or key c, its format n and the
    numbers x, y, z."""
    return REASONS[code].format(c=c, n=n, x=x, y=y, z=z)
