# torch.autograd.Function for the torch shim: apply() runs forward() (there is no backward here).


class _Ctx:
    def save_for_backward(self, *ts):
        self.saved_tensors = ts


class Function:
    @classmethod
    def apply(cls, *args):
        return cls.forward(_Ctx(), *args)
