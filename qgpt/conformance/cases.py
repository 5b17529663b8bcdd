"""Every op-level golden case of one format: build_cases(fmt, seed) -> [Case]."""

import numpy as np

from qgpt.conformance.boundary_cases import boundary_cases, cases_next_token
from qgpt.conformance.inputs import NO_FORMAT, ops_policy
from qgpt.conformance.kernel_cases import (
    _cases_attention,
    _cases_cross_entropy,
    _cases_elementwise,
    _cases_embedding,
    _cases_exp_softmax,
    _cases_linear,
    _cases_rmsnorm,
    _cases_rsqrt,
)
from qgpt.conformance.optimizer_cases import _cases_adam, _cases_no_format, _cases_policy_init


def build_cases(fmt, seed=0, exhaustive=True):
    """Every op-level case of one data format (NO_FORMAT: the format-free ones);
    exhaustive=False without the exhaustive exp domains (boundary_cases)."""
    rng = np.random.default_rng([seed, sum(map(ord, fmt))])
    if fmt == NO_FORMAT:
        return _cases_no_format(rng, seed)
    policy = ops_policy(fmt)
    # sampling imports model.py: first, while the 96 KB heap is not yet fragmented
    cases = cases_next_token(fmt, policy, np.random.default_rng([seed, 7, sum(map(ord, fmt))]))
    for make in (_cases_exp_softmax, _cases_rsqrt, _cases_embedding, _cases_rmsnorm,
                 _cases_linear, _cases_elementwise, _cases_attention, _cases_cross_entropy):
        cases += make(fmt, policy, rng)
    cases += _cases_adam(fmt, policy, rng, seed)
    cases += _cases_policy_init(fmt, policy, rng, seed)
    cases += boundary_cases(fmt, policy, rng, exhaustive)
    return cases
