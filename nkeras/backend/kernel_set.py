"""Kernel lookup by op name: ``ops.dense_forward(...)`` finds the function in
the device's kernel package the first time it is asked for, then binds it as
a plain attribute so later calls cost one attribute read."""

import importlib

FAMILIES = (
    "dense", "activation", "dropout", "loss", "metric", "optim", "array",
    "conv", "conv_pool", "depthwise", "pool", "spatial", "norm", "merge", "attention", "embedding", "recurrent",
)


class KernelSet:
    """The ops of one device: every public function of ``<package>.<family>``."""

    def __init__(self, package):
        self._package = package

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        for family in FAMILIES:
            module = importlib.import_module(f"{self._package}.{family}")
            op = getattr(module, name, None)
            if op is not None and not name.startswith("_"):
                setattr(self, name, op)
                return op
        raise AttributeError(f"no kernel named {name!r} in {self._package}")
