"""Optimizers with Keras 3's names, arguments and update rules, over flat
buffers.

The model packs every trainable weight into one flat parameter buffer and
every gradient into one flat gradient buffer of the same layout; the
optimizer keeps each slot (momentum, velocity, ...) as one more flat buffer
of that size, so a step is one clipping kernel (if configured) and one update
kernel::

    optimizer.build(device, params, segments)   # once, after packing
    optimizer.apply(device.ops, params, grads)  # every training step
"""

import math
import numbers
import re
import warnings

import numpy as np

from nkeras.layers.layer import unique_name
from nkeras.optimizers import schedules
from nkeras.optimizers.schedules import LearningRateSchedule


def _snake_case(name):
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _number(owner, name, value, low=None, high=None, high_open=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{owner}: `{name}` must be a finite float, got {name}={value!r}")
    too_high = high is not None and (value >= high if high_open else value > high)
    if (low is not None and value < low) or too_high:
        interval = f"[{low}, {high})" if high_open else (f"[{low}, {high}]" if high is not None else f">= {low}")
        raise ValueError(f"{owner}: `{name}` must be in {interval}, got {name}={value!r}")
    return float(value)


def _optional_number(owner, name, value):
    return None if value is None else _number(owner, name, value, low=0.0)


def _learning_rate(owner, value):
    if isinstance(value, LearningRateSchedule):
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(
            f"{owner}: `learning_rate` should be a float or an instance of LearningRateSchedule, "
            f"got learning_rate={value!r}"
        )
    return _number(owner, "learning_rate", value)


class Optimizer:
    """Base class of the optimizers.

    Subclasses list their slot buffers in ``_slot_specs()`` and run their
    update kernel in ``_update(ops, params, grads, learning_rate)``.

    Args:
        learning_rate: a float or a ``LearningRateSchedule``.
        weight_decay: if set, decoupled weight decay
            ``w -= w * weight_decay * learning_rate`` before each update.
        clipnorm: if set, each weight's gradient is clipped to this L2 norm.
        clipvalue: if set, gradients are clipped to ``[-clipvalue, clipvalue]``.
        global_clipnorm: if set, all gradients together are clipped to this
            global L2 norm. At most one of the three clipping options may be set.
        use_ema, ema_momentum, ema_overwrite_frequency, loss_scale_factor,
        gradient_accumulation_steps: accepted for Keras compatibility with
            their default values only.
        name: the optimizer's name; by default a unique snake-case version of
            the class name ("adam", "adam_1", ...).
    """

    def __init__(
        self,
        learning_rate,
        weight_decay=None,
        clipnorm=None,
        clipvalue=None,
        global_clipnorm=None,
        use_ema=False,
        ema_momentum=0.99,
        ema_overwrite_frequency=None,
        loss_scale_factor=None,
        gradient_accumulation_steps=None,
        name=None,
        **kwargs,
    ):
        owner = type(self).__name__
        if kwargs.pop("decay", None) is not None:
            warnings.warn("Argument `decay` is no longer supported and will be ignored.", stacklevel=3)
        if kwargs:
            raise ValueError(f"{owner}: argument(s) not recognized: {kwargs}")
        unsupported = {
            "use_ema": (use_ema, False),
            "ema_overwrite_frequency": (ema_overwrite_frequency, None),
            "loss_scale_factor": (loss_scale_factor, None),
            "gradient_accumulation_steps": (gradient_accumulation_steps, None),
        }
        for arg, (value, default) in unsupported.items():
            if value != default:
                raise ValueError(f"{owner}: `{arg}` is not supported by nkeras (got {arg}={value!r}; only {default!r})")
        if sum(arg is not None for arg in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError(
                "Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set. "
                f"Received: clipnorm={clipnorm}, clipvalue={clipvalue}, global_clipnorm={global_clipnorm}"
            )
        self.name = unique_name(_snake_case(owner)) if name is None else name
        self._learning_rate = _learning_rate(owner, learning_rate)
        self.weight_decay = _optional_number(owner, "weight_decay", weight_decay)
        self.clipnorm = _optional_number(owner, "clipnorm", clipnorm)
        self.clipvalue = _optional_number(owner, "clipvalue", clipvalue)
        self.global_clipnorm = _optional_number(owner, "global_clipnorm", global_clipnorm)
        self.use_ema = use_ema
        self.ema_momentum = _number(owner, "ema_momentum", ema_momentum, low=0.0, high=1.0)
        self.ema_overwrite_frequency = ema_overwrite_frequency
        self.loss_scale_factor = loss_scale_factor
        self.gradient_accumulation_steps = gradient_accumulation_steps
        self.iterations = 0
        self.built = False

    # ---- learning rate -----------------------------------------------------

    @property
    def learning_rate(self):
        """The learning rate of the next step, as a float (a schedule is
        evaluated at ``iterations``). Settable to a float or a schedule; a
        float cannot replace a schedule given to the constructor, as in Keras."""
        if isinstance(self._learning_rate, LearningRateSchedule):
            return float(self._learning_rate(self.iterations))
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        value = _learning_rate(type(self).__name__, value)
        if not isinstance(value, LearningRateSchedule) and isinstance(self._learning_rate, LearningRateSchedule):
            raise TypeError(
                "This optimizer was created with a `LearningRateSchedule` object as its `learning_rate` "
                "constructor argument, hence its learning rate is not settable. If you need the learning rate "
                "to be settable, you should instantiate the optimizer with a float `learning_rate` argument."
            )
        self._learning_rate = value

    # ---- engine API ----------------------------------------------------------

    def _slot_specs(self):
        """``[(name, initial_value), ...]`` of the slot buffers, in Keras's order."""
        return []

    def build(self, device, params, segments):
        """Allocate the slot buffers for a flat parameter buffer.

        Building again for the same layout keeps the slots and the step
        count (recompiling a model with a used optimizer continues its
        state, as in Keras), moving them when the device changed; a new
        layout gets fresh slots.

        Args:
            device: the device that owns ``params``.
            params: the flat (1-D) parameter buffer.
            segments: int64 offsets of each variable in ``params``
                (number of variables + 1, from 0 to ``params.size``).
        """
        segments = np.asarray(segments, dtype=np.int64)
        if params.ndim != 1:
            raise ValueError(f"{self.name}: build expects a flat (1-D) parameter buffer, got shape {params.shape}")
        if segments.ndim != 1 or segments.size < 1 or segments[0] != 0 or segments[-1] != params.size \
                or np.any(np.diff(segments) < 0):
            raise ValueError(
                f"{self.name}: `segments` must be non-decreasing offsets from 0 to {params.size}, got {segments}"
            )
        layout = (params.size, np.dtype(params.dtype), segments.tobytes())
        if self.built and layout == self._layout:
            if device is not self._device:
                self._move_slots(device, segments)
            return
        self._layout = layout
        self._device = device
        self._segments = device.to_device(segments)
        self._norm = device.zeros(1, np.float64)
        self._empty = device.zeros(0, params.dtype)
        self._slots = {}
        for name, initial_value in self._slot_specs():
            if initial_value == 0.0:
                self._slots[name] = device.zeros(params.size, params.dtype)
            else:
                self._slots[name] = device.to_device(np.full(params.size, initial_value, dtype=params.dtype))
        self.built = True

    def _move_slots(self, device, segments):
        slots = {name: self._device.to_host(buffer) for name, buffer in self._slots.items()}
        self._device = device
        self._segments = device.to_device(segments)
        self._norm = device.zeros(1, np.float64)
        self._empty = device.zeros(0, self._layout[1])
        self._slots = {name: device.to_device(values) for name, values in slots.items()}

    def apply(self, ops, params, grads):
        """One optimizer step: clip ``grads`` in place if configured, update
        ``params`` and the slots, then increment ``iterations``.

        Args:
            ops: the device's kernel set (``device.ops``).
            params: the flat parameter buffer given to ``build``.
            grads: the flat gradient buffer of the same layout.
        """
        if not self.built:
            raise RuntimeError(f"{self.name}: call build(device, params, segments) before apply()")
        learning_rate = self.learning_rate
        if self.clipnorm:
            ops.clip_by_segment_norm(grads, self._segments, self.clipnorm)
        elif self.global_clipnorm:
            ops.clip_by_global_norm(grads, self.global_clipnorm, self._norm)
        elif self.clipvalue:
            ops.clip_by_value(grads, self.clipvalue)
        self._update(ops, params, grads, learning_rate)
        self.iterations += 1

    def _update(self, ops, params, grads, learning_rate):
        raise NotImplementedError(f"Optimizer '{type(self).__name__}' must implement `_update`.")

    def _weight_decay(self):
        return 0.0 if self.weight_decay is None else self.weight_decay

    def slot_buffers(self):
        """``[(name, buffer), ...]``: the slot buffers, for saving."""
        if not self.built:
            return []
        return [(name, self._slots[name]) for name, _ in self._slot_specs()]

    def set_slot_buffers(self, slots):
        """Copy saved slot values into the slot buffers.

        Args:
            slots: ``[(name, array), ...]`` as returned by ``slot_buffers()``.
        """
        if not self.built:
            raise ValueError(f"{self.name}: the optimizer must be built before set_slot_buffers()")
        slots = list(slots)
        expected = [name for name, _ in self.slot_buffers()]
        received = [name for name, _ in slots]
        if received != expected:
            raise ValueError(f"{self.name}: expected slot buffers {expected}, got {received}")
        for (name, target), (_, value) in zip(self.slot_buffers(), slots):
            if tuple(value.shape) != tuple(target.shape):
                raise ValueError(
                    f"{self.name}: slot '{name}' has shape {target.shape}, got a value of shape {value.shape}"
                )
            target[...] = value

    # ---- config --------------------------------------------------------------

    def get_config(self):
        learning_rate = self._learning_rate
        if isinstance(learning_rate, LearningRateSchedule):
            learning_rate = schedules.serialize(learning_rate)
        return {
            "name": self.name,
            "learning_rate": learning_rate,
            "weight_decay": self.weight_decay,
            "clipnorm": self.clipnorm,
            "global_clipnorm": self.global_clipnorm,
            "clipvalue": self.clipvalue,
            "use_ema": self.use_ema,
            "ema_momentum": self.ema_momentum,
            "ema_overwrite_frequency": self.ema_overwrite_frequency,
            "loss_scale_factor": self.loss_scale_factor,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """Rebuild an optimizer from ``get_config()`` (a serialized schedule
        under ``learning_rate`` is deserialized)."""
        config = dict(config)
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = schedules.deserialize(config["learning_rate"], custom_objects=custom_objects)
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name} iterations={self.iterations}>"


class SGD(Optimizer):
    """Gradient descent with optional (Nesterov) momentum.

    Without momentum ``w -= learning_rate * g``; with it
    ``v = momentum * v - learning_rate * g`` and ``w += v`` (Nesterov:
    ``w += momentum * v - learning_rate * g``).

    Args:
        learning_rate: float or ``LearningRateSchedule``.
        momentum: float in [0, 1]; 0 is plain gradient descent.
        nesterov: whether to use Nesterov momentum.
        weight_decay, clipnorm, clipvalue, global_clipnorm, name, **kwargs:
            see ``Optimizer``.
    """

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=None, clipnorm=None,
                 clipvalue=None, global_clipnorm=None, name=None, **kwargs):
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay, clipnorm=clipnorm,
                         clipvalue=clipvalue, global_clipnorm=global_clipnorm, name=name, **kwargs)
        self.momentum = _number("SGD", "momentum", momentum, low=0.0, high=1.0)
        self.nesterov = bool(nesterov)

    def _slot_specs(self):
        return [("momentum", 0.0)] if self.momentum != 0.0 else []

    def _update(self, ops, params, grads, learning_rate):
        momentum_buf = self._slots["momentum"] if self.momentum != 0.0 else self._empty
        ops.sgd_update(params, grads, momentum_buf, learning_rate, self.momentum, self.nesterov, self._weight_decay())

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam: adaptive estimates of the first and second gradient moments.

    Args:
        learning_rate: float or ``LearningRateSchedule``.
        beta_1: decay rate of the first moment estimate, in [0, 1).
        beta_2: decay rate of the second moment estimate, in [0, 1).
        epsilon: small constant added to ``sqrt(v)`` ("epsilon hat").
        amsgrad: whether to use the AMSGrad variant (the running maximum of
            the second moment in the denominator).
        weight_decay, clipnorm, clipvalue, global_clipnorm, name, **kwargs:
            see ``Optimizer``.
    """

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, name=None, **kwargs):
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay, clipnorm=clipnorm,
                         clipvalue=clipvalue, global_clipnorm=global_clipnorm, name=name, **kwargs)
        owner = type(self).__name__
        self.beta_1 = _number(owner, "beta_1", beta_1, low=0.0, high=1.0, high_open=True)
        self.beta_2 = _number(owner, "beta_2", beta_2, low=0.0, high=1.0, high_open=True)
        self.epsilon = _number(owner, "epsilon", epsilon, low=0.0)
        self.amsgrad = bool(amsgrad)

    def _slot_specs(self):
        specs = [("momentum", 0.0), ("velocity", 0.0)]
        if self.amsgrad:
            specs.append(("velocity_hat", 0.0))
        return specs

    def _update(self, ops, params, grads, learning_rate):
        v_hat_max = self._slots["velocity_hat"] if self.amsgrad else self._empty
        ops.adam_update(params, grads, self._slots["momentum"], self._slots["velocity"], v_hat_max, learning_rate,
                        self.beta_1, self.beta_2, self.epsilon, self.iterations + 1, self.amsgrad,
                        self._weight_decay())

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon,
                "amsgrad": self.amsgrad}


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019).

    Args:
        learning_rate: float or ``LearningRateSchedule``.
        weight_decay: the decoupled weight decay rate (required).
        beta_1, beta_2, epsilon, amsgrad: as for ``Adam``.
        clipnorm, clipvalue, global_clipnorm, name, **kwargs: see ``Optimizer``.
    """

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, name=None, **kwargs):
        if weight_decay is None:
            raise ValueError("Argument `weight_decay` must be a float. Received: weight_decay=None")
        super().__init__(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, amsgrad=amsgrad,
                         weight_decay=weight_decay, clipnorm=clipnorm, clipvalue=clipvalue,
                         global_clipnorm=global_clipnorm, name=name, **kwargs)


class RMSprop(Optimizer):
    """RMSprop: divide the gradient by a running root mean square.

    Args:
        learning_rate: float or ``LearningRateSchedule``.
        rho: discounting factor of the running averages, in [0, 1].
        momentum: float in [0, 1]; if positive, the increments are
            accumulated with this momentum.
        epsilon: small constant added inside the square root.
        centered: if True, normalise by the estimated variance of the
            gradient (subtracting the squared running mean gradient).
        weight_decay, clipnorm, clipvalue, global_clipnorm, name, **kwargs:
            see ``Optimizer``.
    """

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, name=None, **kwargs):
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay, clipnorm=clipnorm,
                         clipvalue=clipvalue, global_clipnorm=global_clipnorm, name=name, **kwargs)
        self.rho = _number("RMSprop", "rho", rho, low=0.0, high=1.0)
        self.momentum = _number("RMSprop", "momentum", momentum, low=0.0, high=1.0)
        self.epsilon = _number("RMSprop", "epsilon", epsilon, low=0.0)
        self.centered = bool(centered)

    def _slot_specs(self):
        specs = [("velocity", 0.0)]
        if self.momentum > 0.0:
            specs.append(("momentum", 0.0))
        if self.centered:
            specs.append(("average_gradient", 0.0))
        return specs

    def _update(self, ops, params, grads, learning_rate):
        average_grad = self._slots["average_gradient"] if self.centered else self._empty
        momentum_buf = self._slots["momentum"] if self.momentum > 0.0 else self._empty
        ops.rmsprop_update(params, grads, self._slots["velocity"], average_grad, momentum_buf, learning_rate, self.rho,
                           self.momentum, self.epsilon, self.centered, self._weight_decay())

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum, "epsilon": self.epsilon,
                "centered": self.centered}


class Adagrad(Optimizer):
    """Adagrad: per-parameter learning rates scaled by the accumulated
    squared gradients.

    Args:
        learning_rate: float or ``LearningRateSchedule``.
        initial_accumulator_value: non-negative starting value of the
            accumulators.
        epsilon: small constant added inside the square root.
        weight_decay, clipnorm, clipvalue, global_clipnorm, name, **kwargs:
            see ``Optimizer``.
    """

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, name=None, **kwargs):
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay, clipnorm=clipnorm,
                         clipvalue=clipvalue, global_clipnorm=global_clipnorm, name=name, **kwargs)
        self.initial_accumulator_value = _number("Adagrad", "initial_accumulator_value", initial_accumulator_value,
                                                 low=0.0)
        self.epsilon = _number("Adagrad", "epsilon", epsilon, low=0.0)

    def _slot_specs(self):
        return [("accumulator", self.initial_accumulator_value)]

    def _update(self, ops, params, grads, learning_rate):
        ops.adagrad_update(params, grads, self._slots["accumulator"], learning_rate, self.epsilon,
                           self._weight_decay())

    def get_config(self):
        return {**super().get_config(), "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}


ALL_OBJECTS_DICT = {cls.__name__.lower(): cls for cls in (SGD, Adam, AdamW, RMSprop, Adagrad)}


def serialize(optimizer):
    """``{"class_name": ..., "config": ...}`` for an optimizer."""
    if not isinstance(optimizer, Optimizer):
        raise ValueError(f"serialize: expected an Optimizer, got {optimizer!r}")
    return {"class_name": type(optimizer).__name__, "config": optimizer.get_config()}


def deserialize(config, custom_objects=None):
    """Rebuild an optimizer from ``serialize``'s output; built-in class names
    match case-insensitively.

    Args:
        config: dict with ``class_name`` and ``config``.
        custom_objects: optional dict of extra optimizer (and schedule)
            classes by name.
    """
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(f"deserialize: expected a dict with 'class_name' and 'config', got {config!r}")
    class_name = config["class_name"]
    custom_objects = custom_objects or {}
    if class_name in custom_objects:
        cls = custom_objects[class_name]
    elif isinstance(class_name, str) and class_name.lower() in ALL_OBJECTS_DICT:
        cls = ALL_OBJECTS_DICT[class_name.lower()]
    else:
        raise ValueError(f"Unknown optimizer {class_name!r}; valid names: {sorted(ALL_OBJECTS_DICT)}")
    return cls.from_config(dict(config.get("config") or {}), custom_objects=custom_objects)


def get(identifier):
    """An optimizer from a name ("adam", "SGD", ...), a config dict or an
    ``Optimizer`` instance (returned unchanged); None gives None."""
    if identifier is None or isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        return deserialize({"class_name": identifier, "config": {}})
    if isinstance(identifier, dict):
        return deserialize(identifier)
    raise ValueError(
        f"Could not interpret optimizer identifier: {identifier!r}; expected an Optimizer, a config dict or one of "
        f"{sorted(ALL_OBJECTS_DICT)}"
    )


__all__ = [
    "Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "schedules", "serialize", "deserialize", "get",
]
