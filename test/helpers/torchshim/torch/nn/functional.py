# torch.nn.functional for the torch shim: the ops an exported model's forward uses, float32 in and out
# (GeLU exact erf, softplus with threshold 20); GEMMs and attention accumulate in float64 and round once,
# as fogc's CPU reference does, so bf16 rounding downstream sees the same f32 values.
import math

import numpy as np

from .. import Tensor, _erf, float32


def _f(x):
    return x.a.astype(np.float32)


def linear(x, w):
    return Tensor(np.matmul(_f(x).astype(np.float64), _f(w).T.astype(np.float64)).astype(np.float32), float32)


def gelu(x):
    a = _f(x)
    return Tensor(a * np.float32(0.5) * (1 + _erf(a * np.float32(1 / math.sqrt(2)))), float32)


def silu(x):
    a = _f(x)
    return Tensor(a / (1 + np.exp(-a)), float32)


def softplus(x):
    a = _f(x)
    return Tensor(np.where(a > 20, a, np.log1p(np.exp(np.minimum(a, 20)))).astype(np.float32), float32)


def layer_norm(x, shape, weight=None, bias=None, eps=1e-5):
    a = _f(x)
    mu = a.mean(-1, keepdims=True)
    var = ((a - mu) ** 2).mean(-1, keepdims=True)
    y = (a - mu) / np.sqrt(var + np.float32(eps))
    if weight is not None:
        y = y * _f(weight)
    if bias is not None:
        y = y + _f(bias)
    return Tensor(y.astype(np.float32), float32)


def scaled_dot_product_attention(q, k, v, is_causal=False, scale=None, enable_gqa=False):
    q, k, v = _f(q).astype(np.float64), _f(k).astype(np.float64), _f(v).astype(np.float64)
    if k.shape[-3] != q.shape[-3]:
        if not enable_gqa:
            raise RuntimeError("torch shim: grouped-query attention needs enable_gqa=True")
        rep = q.shape[-3] // k.shape[-3]
        k, v = np.repeat(k, rep, axis=-3), np.repeat(v, rep, axis=-3)
    s = np.matmul(q, np.swapaxes(k, -1, -2)) * (scale if scale is not None else 1 / math.sqrt(q.shape[-1]))
    if is_causal:
        t = s.shape[-1]
        s = np.where(np.tril(np.ones((t, t), dtype=bool)), s, -np.inf)
    s = s - s.max(-1, keepdims=True)
    p = np.exp(s)
    p = p / p.sum(-1, keepdims=True)
    return Tensor(np.matmul(p, v).astype(np.float32), float32)


def cross_entropy(logits, targets):
    a = _f(logits)
    m = a.max(-1, keepdims=True)
    lse = np.log(np.exp(a - m).sum(-1)) + m[:, 0]
    return Tensor(np.float32((lse - a[np.arange(a.shape[0]), targets.a]).mean()), float32)
