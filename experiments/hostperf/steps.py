"""N training steps of one configuration, as `qgpt train` and `qgpt bench` take them
(train.training_steps with LOSS_BATCH), for icount.sh to count under cachegrind.

usage: python experiments/hostperf/steps.py FORMAT|float ROUNDING N [DATA]
"""

import sys

from qgpt import data
from qgpt.runconfig import TrainConfig
from qgpt.train import LOSS_BATCH, make_model, training_steps

fmt, rounding, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
path = sys.argv[4] if len(sys.argv) > 4 else "../shared/data/names-makemore.txt"
fields = {} if fmt == "float" else dict(format=fmt, rounding=rounding)
cfg = TrainConfig(data=path, steps=1000, seed=42, **fields)
for _ in training_steps(make_model(cfg), data.load(cfg.data), cfg, stop=n,
                        loss_batch=LOSS_BATCH):
    pass
