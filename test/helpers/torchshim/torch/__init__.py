# A numpy stand-in for the small part of PyTorch that an exported model's FORWARD pass uses (tensors,
# nn.Module registration, a few ops), so CI machines without torch can run model.py against fogc.
# Test-only: no autograd, CPU only, float32/float64 math; bfloat16 is float32 holding bf16-rounded values.
import contextlib
import math
from types import SimpleNamespace

import numpy as np

__version__ = "0.0-numpy-shim"
backends = SimpleNamespace(cuda=SimpleNamespace(matmul=SimpleNamespace(allow_tf32=False)), cudnn=SimpleNamespace(allow_tf32=False))



class dtype:
    def __init__(self, name, np_dtype, floating):
        self.name, self.np, self.is_floating_point = name, np.dtype(np_dtype), floating

    def __repr__(self):
        return "torch." + self.name


float64 = dtype("float64", np.float64, True)
float32 = dtype("float32", np.float32, True)
float16 = dtype("float16", np.float16, True)
bfloat16 = dtype("bfloat16", np.float32, True)
float8_e4m3fn = dtype("float8_e4m3fn", np.float32, True)
float8_e5m2 = dtype("float8_e5m2", np.float32, True)
int64 = dtype("int64", np.int64, False)
int32 = dtype("int32", np.int32, False)
int16 = dtype("int16", np.int16, False)
int8 = dtype("int8", np.int8, False)
uint8 = dtype("uint8", np.uint8, False)
bool = dtype("bool", np.bool_, False)  # noqa: A001
_BY_NP = {np.dtype(np.float64): float64, np.dtype(np.float32): float32, np.dtype(np.float16): float16, np.dtype(np.int64): int64,
          np.dtype(np.int32): int32, np.dtype(np.int16): int16, np.dtype(np.int8): int8, np.dtype(np.uint8): uint8, np.dtype(np.bool_): bool}


class device:
    def __init__(self, spec="cpu", index=None):
        spec = str(spec)
        if not spec.startswith("cpu"):
            raise RuntimeError("torch shim: only the cpu device exists, got %r" % spec)
        self.type, self.index = "cpu", None

    def __str__(self):
        return "cpu"

    def __eq__(self, other):
        return isinstance(other, device)


_CPU = device("cpu")


def round_bf16(a):
    """float32 values rounded to the nearest bf16 (ties to even), NaN kept: fogc's roundToBF16."""
    a = np.asarray(a, dtype=np.float32)
    u = a.view(np.uint32).astype(np.uint64)
    r = (((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16) & 0xFFFFFFFF
    return np.where(np.isnan(a), a, r.astype(np.uint32).view(np.float32))


def round_fp8(a, dt):
    """Nearest-even rounding to float8 (e4m3fn: NaN past 464 in magnitude; e5m2: inf past 61440), as
    PyTorch's non-saturating .to(float8)."""
    mant, emin, top, over = (3, -6, 448.0, np.nan) if dt is float8_e4m3fn else (2, -14, 57344.0, np.inf)
    a = np.asarray(a, dtype=np.float64)
    mag = np.abs(a)
    e = np.maximum(np.floor(np.log2(np.where(mag > 0, mag, 1.0))), emin)
    q = np.exp2(e - mant)
    r = np.round(mag / q) * q
    r = np.where(r > top, over, r)
    return np.where(np.isnan(a), a, np.copysign(r, a)).astype(np.float32)


def _arr(x):
    return x.a if isinstance(x, Tensor) else x


def _wrap(a, dt=None):
    a = np.asarray(a)
    return Tensor(a, dt if dt is not None else _BY_NP.get(a.dtype, float32))


def _result_dtype(x, y):
    dts = [t.dtype for t in (x, y) if isinstance(t, Tensor)]
    if any(d is float64 for d in dts):
        return float64
    if any(d.is_floating_point for d in dts) or any(isinstance(t, float) for t in (x, y)):
        return float32
    return dts[0]


def _binary(op):
    def f(self, other):
        dt = _result_dtype(self, other)
        return Tensor(np.asarray(op(self.a, _arr(other))).astype(dt.np), dt)
    return f


def _rbinary(op):
    def f(self, other):
        dt = _result_dtype(self, other)
        return Tensor(np.asarray(op(_arr(other), self.a)).astype(dt.np), dt)
    return f


class Tensor:
    def __init__(self, a, dt):
        self.a, self.dtype = a, dt
        self.grad, self.requires_grad = None, False

    # -- properties
    @property
    def shape(self):
        return tuple(self.a.shape)

    @property
    def device(self):
        return _CPU

    is_cuda = False

    def size(self, d=None):
        return self.shape if d is None else self.shape[d]

    def dim(self):
        return self.a.ndim

    def numel(self):
        return int(self.a.size)

    def __len__(self):
        return self.a.shape[0]

    def __repr__(self):
        return "shim.Tensor(%s, %s)" % (self.shape, self.dtype)

    def __float__(self):
        return float(self.a.reshape(-1)[0]) if self.a.size == 1 else float(self.a)

    def item(self):
        return self.__float__()

    def tolist(self):
        return self.a.tolist()

    def numpy(self):
        return self.a

    # -- conversions
    def to(self, *args, dtype=None, device=None, **kw):
        if kw:
            raise TypeError("torch shim: Tensor.to got %s" % sorted(kw))
        for x in args:
            if isinstance(x, globals()["dtype"]):
                dtype = x
        if dtype is None or dtype is self.dtype:
            return self
        if dtype is bfloat16:
            return Tensor(round_bf16(self.a.astype(np.float32)), bfloat16)
        if dtype is float8_e4m3fn or dtype is float8_e5m2:
            return Tensor(round_fp8(self.a, dtype), dtype)
        return Tensor(self.a.astype(dtype.np), dtype)

    def float(self):
        return self.to(float32)

    def double(self):
        return self.to(float64)

    def long(self):
        return self.to(int64)

    def cpu(self):
        return self

    def detach(self):
        return self

    def clone(self):
        return Tensor(self.a.copy(), self.dtype)

    def contiguous(self):
        return self

    def view_as(self, other):
        return Tensor(self.a.reshape(other.shape), self.dtype)

    # -- shape
    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return Tensor(self.a.reshape(shape), self.dtype)

    view = reshape

    def flatten(self):
        return self.reshape(-1)

    def transpose(self, i, j):
        return Tensor(np.swapaxes(self.a, i, j), self.dtype)

    def t(self):
        return self.transpose(0, 1)

    def split(self, size, dim=-1):
        n = self.a.shape[dim]
        return tuple(Tensor(x, self.dtype) for x in np.split(self.a, list(range(size, n, size)), axis=dim))

    def __getitem__(self, idx):
        return Tensor(self.a[idx], self.dtype)

    # -- math
    def abs(self):
        return Tensor(np.abs(self.a), self.dtype)

    def pow(self, p):
        return Tensor(self.a ** p, self.dtype)

    def mean(self, dim=None, keepdim=False):
        return Tensor(self.a.mean(axis=dim, keepdims=keepdim, dtype=self.a.dtype), self.dtype)

    def sum(self, dim=None, keepdim=False):
        return Tensor(self.a.sum(axis=dim, keepdims=keepdim), self.dtype)

    def amax(self, dim=None, keepdim=False):
        return Tensor(self.a.max(axis=dim, keepdims=keepdim), self.dtype)

    def max(self):
        return Tensor(self.a.max(), self.dtype)

    def norm(self):
        return Tensor(np.sqrt((self.a.astype(np.float64) ** 2).sum()), float64)

    def reciprocal(self):
        return Tensor(1 / self.a, self.dtype)

    __add__ = _binary(np.add)
    __sub__ = _binary(np.subtract)
    __mul__ = _binary(np.multiply)
    __truediv__ = _binary(np.divide)
    __matmul__ = _binary(np.matmul)
    __radd__ = _rbinary(np.add)
    __rsub__ = _rbinary(np.subtract)
    __rmul__ = _rbinary(np.multiply)
    __rtruediv__ = _rbinary(np.divide)

    def clamp(self, min=None, max=None):  # noqa: A002
        return Tensor(np.clip(self.a, min, max).astype(self.a.dtype), self.dtype)

    def __setitem__(self, idx, value):
        self.a[idx] = _arr(value)

    def __and__(self, other):
        return Tensor(self.a & _arr(other), bool)

    def __neg__(self):
        return Tensor(-self.a, self.dtype)

    def __gt__(self, other):
        return Tensor(self.a > _arr(other), bool)

    def __lt__(self, other):
        return Tensor(self.a < _arr(other), bool)

    # -- in place (parameters)
    def normal_(self, mean=0.0, std=1.0, generator=None):
        self.a[...] = np.random.default_rng(0).normal(mean, std, self.a.shape)
        return self

    def fill_(self, v):
        self.a[...] = _arr(v)
        return self

    def copy_(self, src):
        if tuple(src.shape) != self.shape:
            raise RuntimeError("torch shim: copy_ of %s into %s" % (src.shape, self.shape))
        self.a[...] = src.a
        return self

    def zero_(self):
        self.a[...] = 0
        return self


def _make(shape, value, dtype):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    dt = dtype or float32
    return Tensor(np.full(shape, value, dtype=dt.np), dt)


def full(shape, value, dtype=None, device=None):
    return _make((shape,), value, dtype)


def empty(*shape, dtype=None, device=None):
    return _make(shape, 0, dtype)


def zeros(*shape, dtype=None, device=None):
    return _make(shape, 0, dtype)


def ones(*shape, dtype=None, device=None):
    return _make(shape, 1, dtype)


def full_like(x, value):
    return Tensor(np.full(x.a.shape, value, dtype=x.a.dtype), x.dtype)


def roll(x, shift):
    return Tensor(np.roll(x.a, shift), x.dtype)


def tensor(data, dtype=None, device=None):
    if dtype is None:
        a = np.asarray(data)
        return _wrap(a.astype(np.float32) if a.dtype == np.float64 else a)
    return Tensor(np.asarray(data, dtype=dtype.np), dtype)


def arange(n, dtype=None, device=None):
    dt = dtype or int64
    return Tensor(np.arange(n, dtype=dt.np), dt)


def frombuffer(buf, dtype):
    return Tensor(np.frombuffer(buf, dtype=dtype.np).copy(), dtype)


def _unary(f):
    def g(x):
        return Tensor(f(x.a), x.dtype if x.dtype is not bfloat16 else float32)
    return g


cos, sin, tanh, expm1, exp, sqrt = (_unary(np.cos), _unary(np.sin), _unary(np.tanh), _unary(np.expm1), _unary(np.exp), _unary(np.sqrt))
rsqrt = _unary(lambda a: (1 / np.sqrt(a)).astype(a.dtype))
exp2, floor, log2 = _unary(np.exp2), _unary(np.floor), _unary(np.log2)


def isinf(x):
    return Tensor(np.isinf(x.a), bool)


def isfinite(x):
    return Tensor(np.isfinite(x.a), bool)


def clamp(x, min=None, max=None):  # noqa: A002
    return Tensor(np.clip(x.a, min, max).astype(x.a.dtype), x.dtype)


def maximum(a, b):
    return Tensor(np.maximum(a.a, b.a), a.dtype)


def where(c, a, b):
    dt = a.dtype if isinstance(a, Tensor) else b.dtype
    return Tensor(np.where(c.a, _arr(a), _arr(b)).astype(dt.np), dt)


def cat(ts, dim=0):
    return Tensor(np.concatenate([t.a for t in ts], axis=dim), ts[0].dtype)


def stack(ts, dim=0):
    return Tensor(np.stack([t.a for t in ts], axis=dim), ts[0].dtype)


def manual_seed(seed):
    np.random.seed(seed)


def no_grad():
    return contextlib.nullcontext()


def autocast(device_type="cpu", dtype=None, enabled=True):
    if enabled:
        raise RuntimeError("torch shim: autocast is not modelled; run the shim in fp32 or bf16_gemm_inputs")
    return contextlib.nullcontext()


def is_tensor(x):
    return isinstance(x, Tensor)


def _erf(a):
    return np.vectorize(math.erf, otypes=[np.float64])(a.astype(np.float64)).astype(a.dtype)


from . import autograd, cuda, distributed, nn  # noqa: E402,F401  (nn needs Tensor, defined above)
