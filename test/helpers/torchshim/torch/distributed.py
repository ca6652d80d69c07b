# torch.distributed for the torch shim: never initialised.


def is_available():
    return False


def is_initialized():
    return False
