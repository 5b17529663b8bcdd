"""IntAdam's int32 path (_step_int32, issue 15's host speed) against its general int64
path (the independent oracle here: the int64 lines of docs/arithmetic.md section 9),
step by step: m, v, the store, the stalled count and the saturation counts must be
equal (experiments/hostperf/adam32check.py's comparison and gradients). Gradients from small to the
largest whose gs does not clip (the int32 path's edge), every fifth step one at the top
of pgrads (the general path's turn, then back), on a fresh state and on a loaded one at
and beyond its limits; the int32 path must take most steps, or the test proves nothing."""

import pytest

from experiments.hostperf import adam32check as chk
from qgpt.int_adam import IntAdam


@pytest.mark.parametrize("p", chk.POLICIES, ids=lambda p: f"{p.short_spec}-{p.rounding}")
def test_int32_path_equals_the_general_path(p, monkeypatch):
    taken = []
    step_int32 = IntAdam._step_int32

    def counting(self, *args):
        out = step_int32(self, *args)
        taken.append(out is not None)
        return out

    monkeypatch.setattr(IntAdam, "_step_int32", counting)
    for seed in (0, 1, 3):  # a fresh state; loaded ones at their limits, one m beyond
        assert chk.run(p, seed, steps=15) is None
    if p.adam_e <= 15 and p.pgrads.frac_bits == p.m_wide.frac_bits:
        assert sum(taken) >= 20, f"the int32 path took {sum(taken)} of {len(taken)} steps"
