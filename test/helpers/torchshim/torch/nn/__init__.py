# torch.nn for the torch shim: Module with PyTorch's parameter/submodule registration and naming,
# Parameter, Embedding. Enough to build an exported model, name its parameters and run forward().
import numpy as np

from .. import Tensor, float32
from . import functional  # noqa: F401


class Parameter(Tensor):
    def __init__(self, t, requires_grad=True):
        super().__init__(t.a.astype(np.float32) if t.dtype is not float32 else t.a, float32)
        self.requires_grad = requires_grad


class Module:
    training = True

    def __init__(self):
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_modules", {})

    def __setattr__(self, name, value):
        params, mods = self.__dict__.get("_parameters"), self.__dict__.get("_modules")
        if params is None:
            raise AttributeError("torch shim: call Module.__init__() before assigning %s" % name)
        for d in (params, mods, self.__dict__):
            d.pop(name, None)
        if isinstance(value, Parameter):
            params[name] = value
        elif isinstance(value, Module):
            mods[name] = value
        elif value is None and name in params:
            params[name] = None
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        d = self.__dict__
        if name in d.get("_parameters", {}):
            return d["_parameters"][name]
        if name in d.get("_modules", {}):
            return d["_modules"][name]
        raise AttributeError("%s has no attribute %s" % (type(self).__name__, name))

    def register_parameter(self, name, p):
        self._parameters[name] = p

    def add_module(self, name, m):
        self._modules[name] = m

    def get_submodule(self, target):
        m = self
        for part in target.split(".") if target else []:
            m = m._modules[part]
        return m

    def named_modules(self, prefix=""):
        yield prefix, self
        for n, m in self._modules.items():
            if m is not None:
                yield from m.named_modules(prefix + ("." if prefix else "") + n)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_parameters(self):
        seen = set()
        for mp, m in self.named_modules():
            for n, p in m._parameters.items():
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                yield (mp + "." if mp else "") + n, p

    def parameters(self):
        for _, p in self.named_parameters():
            yield p

    def to(self, *a, **k):
        return self

    def zero_grad(self, set_to_none=True):
        for p in self.parameters():
            p.grad = None

    def __call__(self, *a, **k):
        return self.forward(*a, **k)


class Embedding(Module):
    def __init__(self, num, dim):
        super().__init__()
        self.weight = Parameter(Tensor(np.zeros((num, dim), dtype=np.float32), float32))

    def forward(self, ids):
        return Tensor(self.weight.a[ids.a], float32)
