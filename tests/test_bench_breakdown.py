"""`qgpt bench --breakdown` (qgpt/bench.py): where a step's time goes, op by op.

The timers wrap the ops only inside timed_ops and leave the modules as they were; the
wrapped ops give the same losses; the rows cover every op the step calls, and the ops
plus the rest add up to the total. (No timing is asserted: speed is measured by the
benchmark commands, docs/BENCHMARKS.md.)
"""

from dataclasses import replace

from qgpt import bench, data, float_ops, int_model, int_ops
from qgpt.optim import FloatAdam
from qgpt.train import TrainConfig


def test_timed_ops_wrap_and_restore_and_change_nothing(names_file):
    ds = data.load(names_file)
    cfg = TrainConfig(data=str(names_file), steps=5, seed=3, format="q4.12")
    originals = (int_ops.linear_forward, float_ops.rmsnorm_backward, FloatAdam.step,
                 int_model.IntAdam.step, int_model.reported_losses)
    _, _, want = bench.time_training(cfg, ds)
    totals = {}
    with bench.timed_ops(totals):
        assert int_ops.linear_forward is not originals[0]
        _, _, got = bench.time_training(cfg, ds)
    assert got == want, "the timed run's losses differ"
    assert (int_ops.linear_forward, float_ops.rmsnorm_backward, FloatAdam.step,
            int_model.IntAdam.step, int_model.reported_losses) == originals
    for op in ("linear_forward", "linear_backward", "attention_forward", "rmsnorm_backward",
               "adam", "reported_losses", "embedding_backward", "saturation_checks"):
        assert totals.get(op, 0) > 0, f"{op} was not timed"


def test_breakdown_rows_add_up(names_file):
    ds = data.load(names_file)
    base = TrainConfig(data=str(names_file), steps=4, seed=3)
    lines = []
    rows = bench.breakdown([base, replace(base, format="q8.8")], ds, 1, log=lines.append)
    assert rows[-1][0] == "total" and rows[-2][0] == "(rest of the step)"
    for col in (1, 2):
        parts = sum(float(r[col]) for r in rows[:-1])
        assert abs(parts - float(rows[-1][col])) <= 0.1 * len(rows), (col, parts, rows[-1])
    assert "q8.8 nearest" in lines[0] and "float64" in lines[0]
