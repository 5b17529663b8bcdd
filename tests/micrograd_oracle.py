"""An independent oracle: microgpt rebuilt on a micrograd-style scalar autograd.

This file imports nothing from qgpt: it re-implements, from the description in
microgpt-reference.md, the model (token by token, with a KV cache), the loss,
the tokenizer and Adam, on scalars that record how they were made, so that
backward() can apply the chain rule one scalar at a time. It is slow and
obviously correct; tests compare the vectorised float reference against it.

Parameters come in and go out as a state dict {name: nested lists [out][in]}
with the names of qgpt.params.PARAMS ("wte", "layer0.attn_wq", ...).
"""

import math

# --- the model's hyperparameters, as microgpt sets them ---

N_LAYER = 1
N_HEAD = 4
BLOCK_SIZE = 16
RMS_EPS = 1e-5
ADAM_LR = 0.01
ADAM_BETA1 = 0.85
ADAM_BETA2 = 0.99
ADAM_EPS = 1e-8

# --- tokenizer: the sorted characters a..z, then BOS ---

UCHARS = sorted(set("abcdefghijklmnopqrstuvwxyz"))
BOS = len(UCHARS)  # 26


def tokenize(name):
    return [BOS] + [UCHARS.index(ch) for ch in name] + [BOS]


# --- the scalar autograd ---


class Value:
    """A scalar, its gradient, and the scalars it was computed from.

    Each op stores d(out)/d(child) for each child when it runs (local_grads),
    so backward only multiplies and adds.
    """

    __slots__ = ("data", "grad", "children", "local_grads")

    def __init__(self, data, children=(), local_grads=()):
        self.data = data
        self.grad = 0.0
        self.children = children
        self.local_grads = local_grads

    def __add__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data + other.data, (self, other), (1.0, 1.0))

    def __mul__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data * other.data, (self, other), (other.data, self.data))

    def __pow__(self, k):
        assert isinstance(k, int | float), "only constant exponents"
        return Value(self.data**k, (self,), (k * self.data ** (k - 1),))

    def exp(self):
        e = math.exp(self.data)
        return Value(e, (self,), (e,))

    def log(self):
        return Value(math.log(self.data), (self,), (1.0 / self.data,))

    def relu(self):
        return Value(max(self.data, 0.0), (self,), (float(self.data > 0),))

    def __neg__(self):
        return self * -1.0

    def __radd__(self, other):
        return self + other

    def __sub__(self, other):
        return self + (-other)

    def __rsub__(self, other):
        return other + (-self)

    def __rmul__(self, other):
        return self * other

    def __truediv__(self, other):
        return self * other**-1

    def __rtruediv__(self, other):
        return other * self**-1

    def backward(self):
        """Set .grad of every scalar this one depends on to d(self)/d(scalar)."""
        # order the graph so that every scalar comes after the scalars it was made from
        # (the longest path in a 16-position graph is about 200 scalars: recursion is fine)
        topo, visited = [], set()

        def build_topo(v):
            if v not in visited:
                visited.add(v)
                for child in v.children:
                    build_topo(child)
                topo.append(v)

        build_topo(self)
        # then apply the chain rule from the output back to the leaves
        self.grad = 1.0
        for v in reversed(topo):
            for child, local in zip(v.children, v.local_grads, strict=True):
                child.grad += local * v.grad


# --- the model, one position at a time ---


def linear(x, w):
    # w [out][in]: y[o] = sum_i w[o][i] * x[i]
    return [sum(w_oi * x_i for w_oi, x_i in zip(w_o, x, strict=True)) for w_o in w]


def softmax(logits):
    # subtract the largest logit (as a constant) before exponentiating
    max_val = max(v.data for v in logits)
    exps = [(v - max_val).exp() for v in logits]
    total = sum(exps)
    return [e / total for e in exps]


def rmsnorm(x):
    ms = sum(xi * xi for xi in x) / len(x)
    scale = (ms + RMS_EPS) ** -0.5
    return [xi * scale for xi in x]


def gpt(params, token_id, pos_id, keys, values):
    """The logits at one position; appends this position's k and v to the cache."""
    x = [t + p for t, p in zip(params["wte"][token_id], params["wpe"][pos_id], strict=True)]
    x = rmsnorm(x)
    for li in range(N_LAYER):
        # attention block
        x_residual = x
        x = rmsnorm(x)
        q = linear(x, params[f"layer{li}.attn_wq"])
        k = linear(x, params[f"layer{li}.attn_wk"])
        v = linear(x, params[f"layer{li}.attn_wv"])
        keys[li].append(k)
        values[li].append(v)
        head_dim = len(q) // N_HEAD
        x_attn = []
        for h in range(N_HEAD):
            hs = slice(h * head_dim, (h + 1) * head_dim)
            q_h = q[hs]
            k_h = [k_s[hs] for k_s in keys[li]]
            v_h = [v_s[hs] for v_s in values[li]]
            attn_logits = [
                sum(q_h[j] * k_h[s][j] for j in range(head_dim)) / head_dim**0.5
                for s in range(len(k_h))
            ]
            attn_weights = softmax(attn_logits)
            head_out = [
                sum(attn_weights[s] * v_h[s][j] for s in range(len(v_h))) for j in range(head_dim)
            ]
            x_attn.extend(head_out)
        x = linear(x_attn, params[f"layer{li}.attn_wo"])
        x = [a + b for a, b in zip(x, x_residual, strict=True)]
        # MLP block
        x_residual = x
        x = rmsnorm(x)
        x = linear(x, params[f"layer{li}.mlp_fc1"])
        x = [xi.relu() for xi in x]
        x = linear(x, params[f"layer{li}.mlp_fc2"])
        x = [a + b for a, b in zip(x, x_residual, strict=True)]
    return linear(x, params["lm_head"])


def loss_of(params, name):
    """The mean cross-entropy over the positions of one name, as a Value."""
    tokens = tokenize(name)
    n = min(BLOCK_SIZE, len(tokens) - 1)
    keys, values = [[] for _ in range(N_LAYER)], [[] for _ in range(N_LAYER)]
    losses = []
    for pos_id in range(n):
        token_id, target_id = tokens[pos_id], tokens[pos_id + 1]
        probs = softmax(gpt(params, token_id, pos_id, keys, values))
        losses.append(-probs[target_id].log())
    return (1 / n) * sum(losses)


# --- state dicts in and out ---


def to_values(state):
    return {name: [[Value(float(x)) for x in row] for row in rows] for name, rows in state.items()}


def data_of(params):
    return {name: [[p.data for p in row] for row in rows] for name, rows in params.items()}


def grad_of(params):
    return {name: [[p.grad for p in row] for row in rows] for name, rows in params.items()}


def loss_and_grad(state, name):
    """(loss, {name: gradient nested lists}) of one name at the given weights."""
    params = to_values(state)
    loss = loss_of(params, name)
    loss.backward()
    return loss.data, grad_of(params)


# --- training with Adam ---


def train(state, docs, num_steps):
    """microgpt's loop: one name per step, docs[step % len(docs)], Adam with linear decay.

    Returns the per-step losses and the final state dict.
    """
    params = to_values(state)
    flat = [p for rows in params.values() for row in rows for p in row]
    m = [0.0] * len(flat)  # first moment
    v = [0.0] * len(flat)  # second moment
    losses = []
    for step in range(num_steps):
        loss = loss_of(params, docs[step % len(docs)])
        loss.backward()
        losses.append(loss.data)
        lr_t = ADAM_LR * (1 - step / num_steps)
        for i, p in enumerate(flat):
            m[i] = ADAM_BETA1 * m[i] + (1 - ADAM_BETA1) * p.grad
            v[i] = ADAM_BETA2 * v[i] + (1 - ADAM_BETA2) * p.grad**2
            m_hat = m[i] / (1 - ADAM_BETA1 ** (step + 1))
            v_hat = v[i] / (1 - ADAM_BETA2 ** (step + 1))
            p.data -= lr_t * m_hat / (v_hat**0.5 + ADAM_EPS)
            p.grad = 0.0
    return losses, data_of(params)
