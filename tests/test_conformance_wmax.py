"""The steps level's large learning rate (qgpt/conformance/training.py, STEPS_HIGH_LR):
its linears' sums pass 2**31 where the fast paths' bound (L1 of x times max |W| below
2**30) sends them to the exact path, so a max |W| bound that lags the weights
(firmware/model.py keeps it between scans) overflows on the int32 target; the 64-bit
unix port sees it too, as the linear kernels skip their saturation where the bound says
that nothing can saturate (kernels.py, "linear")."""


import pytest
from firmware_edit import edited_firmware

from qgpt.conformance.training import STEPS_HIGH_LR, _steps_cases, run_resume, run_steps

RAISE = "wm[j] += ((alpha << 15) >> (self.opt[3] + self.opt[9])) + 3"
INITIAL = "[0] * (_FC2 + 1))"


def _patched(tmp_path, old, new):
    return edited_firmware(tmp_path, old, new, module="model.py")


def _overflow(report):
    """The int32 target's failure: a linear kernel's sum that does not fit int32."""
    assert not report.ok
    why = report.mismatches[0].device
    assert "Int32Overflow" in why and "in linear_" in why, why


def test_a_max_w_bound_never_raised_is_caught_on_both_targets(tmp_path):
    cases = _steps_cases((), (), (), (), STEPS_HIGH_LR)
    dumps = (1, 2, 3)
    # the real bound holds: no overflow in CPython with every intermediate checked
    assert run_steps(cases=cases, dump_steps=dumps, target="int32", workdir=tmp_path).ok
    fw = _patched(tmp_path, RAISE, "wm[j] += 3")  # Adam's moves left out
    # unix: sums beyond the bound stored unsaturated where the bound skipped the saturation
    assert not run_steps(cases=cases, dump_steps=dumps, firmware_dir=fw, workdir=tmp_path).ok
    _overflow(run_steps(cases=cases, dump_steps=dumps, firmware_dir=fw, workdir=tmp_path,
                        target="int32"))


@pytest.mark.slow
def test_a_first_bound_of_one_is_caught_by_a_resume_on_both_targets(tmp_path):
    # a Model that starts with bounds of 1 skips its first scan: after a resume, weights
    # trained at lr 0.9 take the fast paths in the first step
    cases = _steps_cases((), (), (), (), STEPS_HIGH_LR)
    fw = _patched(tmp_path, INITIAL, INITIAL.replace("0", "1", 1))
    assert not run_resume(cases, steps=2, stop=1, firmware_dir=fw, workdir=tmp_path).ok
    _overflow(run_resume(cases, steps=2, stop=1, firmware_dir=fw, workdir=tmp_path,
                         target="int32"))
