"""The issues' accuracy acceptance figures, on makemore's names (read in place from ../shared).

Speed is measured by `qgpt bench` (docs/BENCHMARKS.md), not here.
"""

from pathlib import Path

import pytest

from qgpt import data
from qgpt.bench import time_training
from qgpt.train import TrainConfig, nll

# makemore's names beside the project (../shared, never part of the product)
MAKEMORE = Path(__file__).resolve().parents[2] / "shared" / "data" / "names-makemore.txt"
pytestmark = pytest.mark.skipif(not Path(MAKEMORE).exists(),
                                reason=f"makemore's names are not at {MAKEMORE}")


@pytest.fixture(scope="module")
def makemore():
    return data.load(MAKEMORE)


def run(ds, **kw):
    cfg = TrainConfig(data=str(MAKEMORE), steps=1000, seed=42, **kw)
    _, model, losses = time_training(cfg, ds)
    return sum(losses[-100:]) / 100, nll(model, ds.val)


@pytest.fixture(scope="module")
def float_run(makemore):
    return run(makemore)


def test_float_reference_trains_like_microgpt(float_run):
    last100, _ = float_run
    assert 2.20 <= last100 <= 2.40, f"train_loss_last100 {last100:.4f} (microgpt: 2.276)"


def test_q4_12_matches_float_within_005_nats(makemore, float_run):
    _, val_float = float_run
    _, val = run(makemore, format="q4.12")
    assert abs(val - val_float) <= 0.05, f"q4.12 val_nll {val:.4f}, float {val_float:.4f}"


def test_q8_8_with_stochastic_rounding_within_015_nats(makemore, float_run):
    _, val_float = float_run
    _, val = run(makemore, format="q8.8", rounding="stochastic")
    assert val - val_float <= 0.15, f"q8.8 val_nll {val:.4f}, float {val_float:.4f}"
