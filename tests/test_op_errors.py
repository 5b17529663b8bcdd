"""The per-op error bounds docs/arithmetic.md states, measured on a trained float model."""

import pytest

from experiments import op_errors
from qgpt import data

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


@pytest.fixture(scope="module")
def trained():
    # the built-in names, so the test does not depend on ../shared
    return op_errors.trained_float(str(data.DEFAULT_DATA), steps=300)


@pytest.mark.parametrize("fmt", ["q8.8", "q4.12"])
def test_every_op_within_its_stated_bound(trained, fmt):
    flat, ds = trained
    errs = op_errors.measure(flat, ds.val[:40], fmt)
    ops_seen = {op for op, _ in errs.rows}
    assert {"linear_forward", "linear_backward", "rmsnorm_forward", "rmsnorm_backward",
            "attention_forward", "attention_backward", "cross_entropy_forward",
            "cross_entropy_backward", "embedding_forward", "relu_forward"} <= ops_seen
    for (op, tensor), r in errs.rows.items():
        b = op_errors.bound(op, tensor, r["lsb"])
        assert r["max"] <= b, f"{fmt} {op} {tensor}: max error {r['max']:.3g} > bound {b:.3g}"
