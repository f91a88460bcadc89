"""``compile``/``fit``/``evaluate``/``predict`` over the graph's buffer plans.

One training step, as data: the batch is gathered into the plan's input and
target buffers; the forward kernels run node by node; each output's loss
kernel writes its loss sum and ``dL/dy_pred`` into the plan's output
gradients; the backward kernels write every weight gradient into one flat
buffer; one optimizer kernel updates the flat parameter buffer; metric
kernels add into their totals. Nothing is allocated inside the step.
"""

import math

import numpy as np

from nkeras import backend, config
from nkeras import callbacks as callbacks_module
from nkeras import losses as losses_module
from nkeras import metrics as metrics_module
from nkeras import optimizers
from nkeras.graph import Plan
from nkeras.models.data_adapters import ArrayData, StreamData, check_lengths, is_stream, to_array_list
from nkeras.random import draw_seed, make_generator


class _OutputBinding:
    """The views one output's loss and metrics read and write in a plan."""

    __slots__ = ("loss", "scale", "y_pred", "y_true", "y_true_dense", "sample_weight", "ones", "grad", "loss_sum", "rows")


class _BoundPlan:
    """A Plan plus the target, sample-weight and loss buffers of one batch size."""

    def __init__(self, model, rows, training):
        device, dtype = model._device, model._dtype
        self.device = device
        self.rows = rows
        self.plan = Plan(model._graph, rows, device, training)
        self.x_bufs = [b.reshape(rows, -1) for b in self.plan.input_buffers]
        self.y_bufs = [device.empty((rows,) + shape, dtype) for shape in model._target_shapes]
        self.y_flat = [b.reshape(rows, -1) for b in self.y_bufs]
        self.ones = device.to_device(np.ones(rows, dtype))
        self.sample_weight = device.to_device(np.ones((rows, 1), dtype))
        self.ones_column = self.ones.reshape(rows, 1)
        self.weighted = False
        self.outputs = []
        self.expand = []
        self.masks = []
        for k, pred in enumerate(self.plan.output_buffers):
            binding = _OutputBinding()
            binding.loss = model._losses[k]
            cols = tuple(pred.shape)[-1]
            binding.rows = pred.size // cols
            binding.y_pred = pred.reshape(binding.rows, cols)
            binding.y_true_dense = self.y_bufs[k].reshape(binding.rows, -1)
            binding.y_true = self.y_bufs[k].reshape(binding.rows) if _is_sparse(binding.loss) else binding.y_true_dense
            if binding.rows == rows:
                binding.sample_weight = self.sample_weight.reshape(rows)
                binding.ones = self.ones
            else:
                # Outputs with several rows per sample (Dense over a sequence)
                # repeat each sample's weight over its rows.
                binding.sample_weight = device.to_device(np.ones(binding.rows, dtype))
                binding.ones = device.to_device(np.ones(binding.rows, dtype))
                repeat = device.to_device(np.repeat(np.arange(rows, dtype=np.int64), binding.rows // rows))
                self.expand.append((repeat, binding.sample_weight.reshape(binding.rows, 1)))
            mask = self.plan.output_masks[k]
            if mask is not None and mask.size == binding.rows:
                # Padded steps count for nothing, as in Keras: the loss is a
                # mean over the unmasked rows.
                masked = device.empty(binding.rows, dtype)
                self.masks.append((mask.reshape(binding.rows), binding.sample_weight, masked))
                binding.sample_weight = masked
                binding.ones = mask.reshape(binding.rows)
            grad = self.plan.output_grads[k] if training else device.empty(pred.shape, dtype)
            binding.grad = grad.reshape(binding.rows, cols)
            binding.loss_sum = device.zeros(1, np.float64)
            if binding.loss is not None:
                binding.scale = model._loss_weights[k] * binding.loss.batch_scale(binding.rows)
            self.outputs.append(binding)

    def load(self, load):
        ops = self.device.ops
        if load(self.device, self.x_bufs, self.y_flat, self.sample_weight):
            self.weighted = True
        elif self.weighted:
            ops.copy_into(self.sample_weight, self.ones_column)
            self.weighted = False
        for repeat, target in self.expand:
            ops.gather_rows(self.sample_weight, repeat, 0, target)


def _is_sparse(loss_or_metric):
    return bool(getattr(loss_or_metric, "sparse_labels", False))


def _resolve_verbose(verbose):
    if verbose == "auto":
        return 1
    if verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 'auto', 0, 1 or 2, got {verbose!r}")
    return verbose


def _check_batch_size(batch_size):
    if batch_size is None:
        return 32
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


class Trainer:
    """The training API of ``Model`` (a mixin: the model supplies the graph)."""

    compiled = False

    # ---- compile ---------------------------------------------------------

    def compile(
        self,
        optimizer="rmsprop",
        loss=None,
        loss_weights=None,
        metrics=None,
        weighted_metrics=None,
        run_eagerly=False,
        steps_per_execution=1,
        jit_compile="auto",
        auto_scale_loss=True,
    ):
        """Configure the model for training.

        Args:
            optimizer: name or ``Optimizer`` instance.
            loss: a loss name or ``Loss``; for several outputs, a list or a
                dict keyed by output name (one loss for all when single).
            loss_weights: list or dict of floats weighting each output's loss.
            metrics: metrics to track (names or ``Metric`` objects); for
                several outputs a list of lists or a dict keyed by output name.
            weighted_metrics: like ``metrics``, but weighted by ``sample_weight``.
        """
        if loss is None:
            raise ValueError("compile: `loss` is required (nkeras has no losses added inside layers)")
        names = self.output_names
        losses = self._per_output(loss, "loss", allow_single=True)
        resolved_losses = [None if item is None else losses_module.get(item) for item in losses]
        if all(item is None for item in resolved_losses):
            raise ValueError("compile: at least one output needs a loss")
        if loss_weights is None:
            weights = [1.0] * len(names)
        else:
            weights = [1.0 if w is None else float(w) for w in self._per_output(loss_weights, "loss_weights", allow_single=False)]
        self.optimizer = optimizers.get(optimizer)
        self._losses = resolved_losses
        self._loss_weights = weights
        self._metric_request = (
            self._per_output(metrics, "metrics", allow_single=True, listed=True),
            self._per_output(weighted_metrics, "weighted_metrics", allow_single=True, listed=True),
        )
        self._compiled_metrics = None
        self._plans = {}
        self.compiled = True
        if self.built:
            self._set_target_shapes()
            self._pack_weights()

    def _per_output(self, value, what, allow_single, listed=False):
        names = self.output_names
        if value is None:
            return [[] if listed else None] * len(names)
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(names))
            if unknown:
                raise ValueError(f"compile: {what} has keys {unknown} that are not output names {names}")
            return [value.get(n, [] if listed else None) for n in names]
        is_list = isinstance(value, (list, tuple))
        if listed:
            if is_list and len(names) > 1 and len(value) == len(names) and all(isinstance(v, (list, tuple)) or v is None for v in value):
                return [list(v or []) for v in value]
            return [list(value) if is_list else [value]] * len(names)
        if is_list:
            if len(value) != len(names):
                raise ValueError(f"compile: {what} has {len(value)} entries but the model has {len(names)} outputs {names}")
            return list(value)
        if not allow_single and len(names) > 1:
            raise ValueError(f"compile: {what} must be a list or a dict for a model with outputs {names}")
        return [value] * len(names)

    def _require_compiled(self, what):
        if not self.compiled:
            raise RuntimeError(f"You must call compile() before {what}")

    def _follow_device_scope(self):
        """Move the model to the device of an enclosing ``with
        nkeras.device(...)`` block: weights, optimizer state and metric totals."""
        name = backend.scoped_device_name()
        if name is None or name == self._device.name:
            return
        self._device = backend.get_device(name)
        self._pack_weights()
        for metric in self.metrics:
            metric.place(self._device)

    def _pack_weights(self):
        """Move every weight into one flat parameter buffer on the model's
        device (trainable ones first) with a matching flat gradient buffer,
        and build the optimizer when compiled."""
        device = self._device
        variables = self.trainable_weights
        frozen = self.non_trainable_weights
        sizes = [math.prod(v.shape) for v in variables + frozen]
        total = sum(sizes)
        params = device.empty(total, self._dtype)
        grads = device.zeros(total, self._dtype)
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        for variable, start, size in zip(variables + frozen, offsets, sizes):
            variable.bind(
                device, params[start:start + size].reshape(variable.shape), grads[start:start + size].reshape(variable.shape),
                owner=self,
            )
        trainable_size = int(offsets[len(variables)])
        self._params = params[:trainable_size]
        self._grads = grads[:trainable_size]
        if self.compiled:
            self.optimizer.build(device, self._params, offsets[: len(variables) + 1])
        self._plans = {}

    def _claim_weights(self):
        """Pack the weights into this model's buffers again when another
        model sharing layers with it (a feature extractor, an outer model
        this one is nested in) has packed them into its own since."""
        if any(variable.owner is not self for variable in self.weights):
            self._pack_weights()

    # ---- metrics ---------------------------------------------------------

    def _compile_metrics(self):
        """Resolve metric names against the targets' shapes (Keras picks the
        accuracy variant from them); done once, on the first data seen."""
        if self._compiled_metrics is not None:
            return
        names = self.output_names
        multi = len(names) > 1
        compiled = []
        for weighted, request in ((False, self._metric_request[0]), (True, self._metric_request[1])):
            for k, identifiers in enumerate(request):
                for identifier in identifiers:
                    if isinstance(identifier, str) and identifier in ("accuracy", "acc"):
                        target_shape = (None,) + self._target_shapes[k]
                        metric = metrics_module.resolve_accuracy(identifier, target_shape, self.outputs[k].shape)
                    else:
                        metric = metrics_module.get(identifier)
                    if multi:
                        metric.name = f"{names[k]}_{metric.name}"
                    if weighted and any(m.name == metric.name for m, _, _ in compiled):
                        metric.name = f"weighted_{metric.name}"
                    compiled.append((metric, k, weighted))
        self._compiled_metrics = compiled
        self._loss_trackers = [metrics_module.Mean(name="loss")] + (
            [metrics_module.Mean(name=f"{n}_loss") if self._losses[k] is not None else None for k, n in enumerate(names)]
            if multi else []
        )
        for metric in self.metrics:
            metric.place(self._device)

    @property
    def metrics(self):
        """The loss tracker(s) and compiled metrics (after the first fit/evaluate)."""
        if not self.compiled or self._compiled_metrics is None:
            return []
        return [t for t in self._loss_trackers if t is not None] + [m for m, _, _ in self._compiled_metrics]

    @property
    def metrics_names(self):
        return [m.name for m in self.metrics]

    def reset_metrics(self):
        for metric in self.metrics:
            metric.reset_state()

    def _logs(self):
        values = {m.name: float(m.result()) for m in self.metrics}
        return {key: values[key] for key in sorted(values)}

    # ---- data ------------------------------------------------------------

    def _prepare(self, x, y, sample_weight, batch_size, shuffle, class_weight=None, steps=None, need_targets=True):
        """Validate the data and wrap it as ArrayData or StreamData."""
        if x is None:
            raise ValueError("No input data: pass `x`")
        if is_stream(x):
            if y is not None or sample_weight is not None:
                raise ValueError("When x is a PyDataset or a generator, y and sample_weight come from it; pass x alone")
            self._ensure_built(None)
            self._claim_weights()
            self._follow_device_scope()
            return StreamData(x, self.inputs, self.outputs, self._dtype, steps)
        self._ensure_built(x)
        self._claim_weights()
        self._follow_device_scope()
        xs = to_array_list(x, self.inputs, "inputs", self._dtype)
        for tensor, array in zip(self.inputs, xs):
            if array.shape[1:] != tensor.shape[1:]:
                raise ValueError(
                    f"Input '{tensor.name}' expects samples of shape {tensor.shape[1:]} "
                    f"(full shape {tensor.shape}), got an array of shape {array.shape}"
                )
        ys = []
        if y is not None:
            ys = to_array_list(y, self.outputs, "targets", self._dtype)
        elif need_targets:
            raise ValueError("No targets: pass `y` (or a PyDataset/generator yielding (x, y))")
        weights = None
        if sample_weight is not None:
            weights = np.ascontiguousarray(sample_weight, dtype=self._dtype)
            if weights.ndim != 1:
                raise ValueError(f"sample_weight must be a 1-D array with one weight per sample, got shape {weights.shape}")
        check_lengths([("inputs", xs), ("targets", ys)] + ([("sample_weight", [weights])] if weights is not None else []))
        if ys:
            ys = self._check_targets(ys)
        if class_weight is not None:
            weights = self._class_weights(class_weight, ys, weights)
        return ArrayData(xs, ys, weights, batch_size, shuffle)

    def _set_target_shapes(self):
        """Per output, the shape of one sample's target: the output's shape,
        or its shape with the class axis replaced by 1 for sparse losses."""
        shapes = []
        for k, tensor in enumerate(self.outputs):
            out = tuple(tensor.shape[1:])
            shapes.append(out[:-1] + (1,) if _is_sparse(self._losses[k]) else out)
        self._target_shapes = shapes

    def _check_targets(self, ys):
        checked = []
        for k, (tensor, array) in enumerate(zip(self.outputs, ys)):
            loss = self._losses[k]
            out = tuple(tensor.shape[1:])
            sample = array.shape[1:]
            expected = self._target_shapes[k]
            if sample != expected and not (_is_sparse(loss) and sample == out[:-1]) and not (
                not _is_sparse(loss) and math.prod(sample) == math.prod(expected) and sample in ((), expected[:-1])
            ):
                kind = "class indices of shape" if _is_sparse(loss) else "targets of shape"
                raise ValueError(
                    f"Output '{self.output_names[k]}' has shape {tensor.shape}; its loss "
                    f"{type(loss).__name__ if loss else None} expects {kind} (n,) + {expected if not _is_sparse(loss) else out[:-1]}, "
                    f"got targets of shape {array.shape}"
                )
            array = array.reshape((array.shape[0],) + expected)
            if _is_sparse(loss):
                classes = out[-1]
                low, high = array.min(), array.max()
                if low < 0 or high >= classes or not np.all(np.equal(np.mod(array, 1), 0)):
                    raise ValueError(
                        f"Output '{self.output_names[k]}': {type(loss).__name__} expects integer labels in "
                        f"[0, {classes - 1}], got labels in [{low:g}, {high:g}]"
                    )
            checked.append(array)
        return checked

    def _class_weights(self, class_weight, ys, weights):
        if len(ys) != 1:
            raise ValueError("class_weight is only supported for models with a single output")
        if not isinstance(class_weight, dict):
            raise ValueError(f"class_weight must be a dict mapping class index to weight, got {type(class_weight).__name__}")
        target = ys[0]
        labels = target.reshape(-1) if target.shape[-1] == 1 else target.reshape(target.shape[0], -1).argmax(axis=1)
        table = np.ones(int(max(max(class_weight), labels.max())) + 1, dtype=self._dtype)
        for cls, weight in class_weight.items():
            table[int(cls)] = weight
        result = table[labels.astype(np.int64)][: target.shape[0]]
        return result if weights is None else result * weights

    # ---- plans -----------------------------------------------------------

    def _bound(self, rows, training):
        key = (rows, training)
        bound = self._plans.get(key)
        if bound is None:
            try:
                bound = _BoundPlan(self, rows, training)
            except MemoryError as error:
                raise type(error)(
                    f"Model '{self.name}': the buffers for a batch of {rows} rows do not fit on device "
                    f"'{self._device.name}' ({error}). The weights are as after the last finished step; "
                    f"try a smaller batch_size"
                ) from None
            self._plans[key] = bound
        return bound

    # ---- steps -----------------------------------------------------------

    def _train_step(self, rows, load):
        bound = self._bound(rows, True)
        ops = self._device.ops
        bound.load(load)
        bound.plan.forward(self.optimizer.iterations)
        self._loss_step(ops, bound)
        bound.plan.backward()
        self.optimizer.apply(ops, self._params, self._grads)
        self._metric_step(ops, bound)

    def _test_step(self, rows, load):
        bound = self._bound(rows, False)
        ops = self._device.ops
        bound.load(load)
        bound.plan.forward(0)
        self._loss_step(ops, bound)
        self._metric_step(ops, bound)

    def _loss_step(self, ops, bound):
        """Run each output's loss kernel and add its value to the loss
        trackers on the device (the total loss counts the batch once)."""
        for mask, weights, masked in bound.masks:
            ops.masked_row_weights(mask, weights, config.epsilon(), masked)
        trackers = self._loss_trackers
        rows = bound.rows
        count = rows
        for k, out in enumerate(bound.outputs):
            if out.loss is None:
                continue
            out.loss.compute(ops, out.y_true, out.y_pred, out.sample_weight, out.scale, out.grad, out.loss_sum)
            # The batch's loss (loss_sum * scale) counts once per sample.
            ops.accumulate_mean(out.loss_sum, out.scale * rows, count, trackers[0].totals)
            count = 0
            if len(trackers) > 1:
                weight = self._loss_weights[k]
                ops.accumulate_mean(out.loss_sum, out.scale * rows / weight if weight else 0.0, rows,
                                    trackers[k + 1].totals)

    def _metric_step(self, ops, bound):
        for metric, k, weighted in self._compiled_metrics:
            out = bound.outputs[k]
            y_true = out.y_true_dense.reshape(out.rows) if _is_sparse(metric) else out.y_true_dense
            metric.update_arrays(ops, y_true, out.y_pred, out.sample_weight if weighted else out.ones)

    # ---- public loops ------------------------------------------------------

    def fit(
        self,
        x=None,
        y=None,
        batch_size=None,
        epochs=1,
        verbose="auto",
        callbacks=None,
        validation_split=0.0,
        validation_data=None,
        shuffle=True,
        class_weight=None,
        sample_weight=None,
        initial_epoch=0,
        steps_per_epoch=None,
        validation_steps=None,
        validation_batch_size=None,
        validation_freq=1,
    ):
        """Train the model for ``epochs`` epochs; returns a ``History``.

        Arguments follow Keras 3's ``Model.fit``. ``x`` may be an array, a
        list or dict of arrays, a ``PyDataset`` or a generator of batches.
        """
        self._require_compiled("fit()")
        batch_size = _check_batch_size(batch_size)
        verbose = _resolve_verbose(verbose)
        if not isinstance(validation_split, (int, float)) or not 0.0 <= validation_split < 1.0:
            raise ValueError(f"validation_split must be a float in [0, 1), got {validation_split!r}")
        if not isinstance(epochs, (int, np.integer)) or epochs < 0 or initial_epoch < 0:
            raise ValueError(f"epochs and initial_epoch must be non-negative integers, got {epochs!r} and {initial_epoch!r}")
        if validation_split and validation_data is not None:
            validation_split = 0.0
        if validation_split and is_stream(x):
            raise ValueError("validation_split is only supported for array inputs; pass validation_data instead")

        data = self._prepare(x, y, sample_weight, batch_size, shuffle, class_weight, steps_per_epoch)
        val_data = None
        if validation_split:
            data, val_data = self._split(data, validation_split, validation_batch_size or batch_size)
        elif validation_data is not None:
            val_data = self._validation(validation_data, validation_batch_size or batch_size, validation_steps)
        self._compile_metrics()

        callback_list = callbacks_module.CallbackList(
            callbacks, add_history=True, add_progbar=verbose != 0, model=self, verbose=verbose,
            epochs=epochs, steps=data.batch_count(),
        )
        # Each epoch's order depends only on this seed and the epoch number,
        # so a fit resumed at a later epoch (BackupAndRestore) shuffles alike.
        shuffle_seed = draw_seed()
        self.stop_training = False
        callback_list.on_train_begin()
        # BackupAndRestore sets this when it resumes an interrupted fit.
        initial_epoch = self.__dict__.pop("_initial_epoch", None) or initial_epoch
        epoch_logs = {}
        for epoch in range(initial_epoch, epochs):
            self.reset_metrics()
            callback_list.on_epoch_begin(epoch)
            batch_logs = callback_list.needs_batch_logs
            for step, (rows, load) in enumerate(data.epoch(make_generator([shuffle_seed, epoch]))):
                if batch_logs:
                    callback_list.on_train_batch_begin(step)
                self._train_step(rows, load)
                if batch_logs:
                    callback_list.on_train_batch_end(step, self._logs)
                if self.stop_training:
                    break
            epoch_logs = self._logs()
            if val_data is not None and (epoch + 1) % validation_freq == 0:
                val_logs = self._run_test(val_data, callback_list)
                epoch_logs.update({f"val_{name}": value for name, value in val_logs.items()})
            callback_list.on_epoch_end(epoch, epoch_logs)
            if self.stop_training:
                break
        callback_list.on_train_end(epoch_logs)
        return self.history

    def _split(self, data, validation_split, val_batch_size):
        split_at = int(math.ceil(data.size * (1.0 - validation_split)))
        if split_at == 0 or split_at == data.size:
            raise ValueError(
                f"validation_split={validation_split} leaves an empty training or validation set for {data.size} samples"
            )
        cut = lambda arrays, lo, hi: [a[lo:hi] for a in arrays]
        weights = data.sample_weight
        train = ArrayData(cut(data.xs, 0, split_at), cut(data.ys, 0, split_at),
                          None if weights is None else weights[:split_at], data.batch_size, data.shuffle)
        val = ArrayData(cut(data.xs, split_at, None), cut(data.ys, split_at, None),
                        None if weights is None else weights[split_at:], val_batch_size, False)
        return train, val

    def _validation(self, validation_data, batch_size, steps):
        if is_stream(validation_data):
            return self._prepare(validation_data, None, None, batch_size, False, steps=steps)
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise ValueError("validation_data must be (x_val, y_val), (x_val, y_val, sample_weight) or a PyDataset")
        return self._prepare(*validation_data[:2], validation_data[2] if len(validation_data) == 3 else None, batch_size, False)

    def _run_test(self, data, callback_list):
        self.reset_metrics()
        callback_list.on_test_begin()
        batch_logs = callback_list.needs_batch_logs
        for step, (rows, load) in enumerate(data.epoch(None)):
            if batch_logs:
                callback_list.on_test_batch_begin(step)
            self._test_step(rows, load)
            if batch_logs:
                callback_list.on_test_batch_end(step, self._logs)
        logs = self._logs()
        callback_list.on_test_end(logs)
        return logs

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, steps=None,
                 callbacks=None, return_dict=False):
        """The loss and metrics on the given data: a scalar when there is only
        the loss, else a list (loss first) or, with ``return_dict``, a dict."""
        self._require_compiled("evaluate()")
        batch_size = _check_batch_size(batch_size)
        verbose = _resolve_verbose(verbose)
        data = self._prepare(x, y, sample_weight, batch_size, False, steps=steps)
        self._compile_metrics()
        callback_list = callbacks_module.CallbackList(
            callbacks, add_progbar=verbose != 0, model=self, verbose=verbose, epochs=1, steps=data.batch_count()
        )
        logs = self._run_test(data, callback_list)
        return self._format_logs(logs, return_dict)

    def _format_logs(self, logs, return_dict):
        if return_dict:
            return logs
        ordered = [logs["loss"]] + [value for name, value in logs.items() if name != "loss"]
        return ordered[0] if len(ordered) == 1 else ordered

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """The model's outputs for ``x`` as NumPy arrays (a list for several outputs)."""
        batch_size = _check_batch_size(batch_size)
        verbose = _resolve_verbose(verbose)
        data = self._prepare(x, None, None, batch_size, False, steps=steps, need_targets=False)
        callback_list = callbacks_module.CallbackList(
            callbacks, add_progbar=verbose != 0, model=self, verbose=verbose, epochs=1, steps=data.batch_count()
        )
        callback_list.on_predict_begin()
        device = self._device
        total = getattr(data, "size", None)
        results = [[] if total is None else np.empty((total,) + t.shape[1:], t.dtype) for t in self.outputs]
        start = 0
        for step, (rows, load) in enumerate(data.epoch(None)):
            callback_list.on_predict_batch_begin(step)
            bound = self._bound(rows, False)
            load(device, bound.x_bufs, [], None)
            bound.plan.forward(0)
            for result, buffer in zip(results, bound.plan.output_buffers):
                if total is None:
                    result.append(device.to_host(buffer))
                else:
                    device.copy_to_host(buffer, result[start:start + rows])
            start += rows
            callback_list.on_predict_batch_end(step, {})
        callback_list.on_predict_end()
        if start == 0:
            raise ValueError("predict: the input yielded no batches")
        if total is None:
            results = [np.concatenate(chunks) for chunks in results]
        return results[0] if len(results) == 1 else results

    def _single_batch(self, x, y, sample_weight, class_weight=None):
        data = self._prepare(x, y, sample_weight, 1 << 62, False, class_weight)
        self._compile_metrics()
        return next(data.epoch(None))

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
        """One optimizer step on one batch; returns the running loss/metrics."""
        self._require_compiled("train_on_batch()")
        rows, load = self._single_batch(x, y, sample_weight, class_weight)
        self._train_step(rows, load)
        return self._format_logs(self._logs(), return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        """Loss and metrics on one batch, without updating the weights."""
        self._require_compiled("test_on_batch()")
        rows, load = self._single_batch(x, y, sample_weight)
        self._test_step(rows, load)
        return self._format_logs(self._logs(), return_dict)

    def predict_on_batch(self, x):
        """The model's outputs for one batch."""
        return self.predict(x, batch_size=len(to_array_list(x, self.inputs, "inputs", self._dtype)[0]) or 1, verbose=0)
