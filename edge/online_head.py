"""TinyOL: a dense layer trained in RAM, one SGD step per streamed sample.

The frozen backbone stays in flash and turns each sample into a feature
vector; this head is the only thing that learns on the device. It keeps no
sample after its step (online learning), and a classifier head can grow new
output classes at run time without disturbing the classes it already knows.

The step runs once per sensor sample on a device whose backbone may cost only
a few thousand MACs, so it is written the way firmware would write it: the
weights and bias live in one float32 block ``P = [W; b]`` of shape
``(n_features + 1, n_outputs)`` multiplied by the augmented input ``[x, 1]``,
every buffer is allocated once, and the step is computed into a second
weight block that is swapped in only if it is finite (double buffering: the
same bytes a gradient buffer would take). Validation is a constant number of
numpy calls whatever the head's size: one finiteness check that covers the
sample (through the logits) and one on the new weights (their squared norm,
a single dot product). Refused steps raise
:class:`~edge.validation.InvalidInputError` and leave the weights as they
were.

Whether a step overflows must not depend on the CPU: BLAS kernels sum in
different orders, so a float32 logit near 3.4e38 can be finite on one machine
and infinite on another. A step is therefore refused by a bound that no
summation order changes: ``‖[x, 1]‖₂ · ‖[W; b]‖_F`` (both sums of squares, so
order moves them only in the last bits) above :data:`LOGIT_BOUND`. The
weights' squared norm is the one the previous step's check already computed.

A one-class softmax head is allowed, because TinyOL grows classes at run
time: its probability is exactly 1, so its gradient is exactly zero and an
SGD step leaves the weights unchanged (loss 0) until a class is added.

A classification head can also be *imprinted* instead of (or before) SGD:
:meth:`OnlineHead.imprint_one` writes a class's column from the running mean
of its features (the rule of :mod:`edge.imprinting`), with one counter per
class as its only extra state.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from typing import Literal

import numpy as np

from edge.learner import ComputeCost, Learner, MemoryFootprint
from edge.step_sizes import check_scales
from edge.validation import InvalidInputError, WeightSpec, as_float_array, check_finite

Task = Literal["regression", "classification"]
FLOAT_BYTES = 4
_F32 = np.dtype(np.float32)
_MIN_PROBABILITY = 1e-12  # cross-entropy is clipped here so one confident mistake cannot give an infinite loss
_COUNT_MAX = np.iinfo(np.uint32).max  # an imprint counter saturates here (as the C head's uint32_t)
COUNT_BYTES = 4  # one uint32 imprint counter per class
# A step is taken only if its logits provably stay inside float32's range (3.4e38) in *every* summation order:
# by Cauchy-Schwarz each partial sum of x1·P[:, j] is at most ‖x1‖·‖P‖_F, and float32 rounding adds at most
# n·2⁻²⁴ of that, so a bound under 1e38 leaves a margin of 3.4× whatever kernel BLAS picks.
LOGIT_BOUND = 1e38
_LOGIT_BOUND_SQUARED = LOGIT_BOUND * LOGIT_BOUND  # a Python float (float64): no overflow


def softmax(z: np.ndarray) -> np.ndarray:
    shifted = z - z.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def grown_by_one_class(params: np.ndarray, step_scales: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """A ``[W; b]`` block (and its step sizes) with one more class: a zero column whose bias is the smallest
    bias, so existing predictions are unchanged, and whose step sizes are 1 (the shared rate).

    The layout the numpy head and the firmware C head (:class:`edge.c_head.CHead`) share.
    """
    rows, columns = params.shape
    grown = np.zeros((rows, columns + 1), np.float32)
    grown[:, :-1] = params
    grown[-1, -1] = params[-1].min()
    if step_scales is not None:
        step_scales = np.ascontiguousarray(np.hstack([step_scales, np.ones((rows, 1), np.float32)]))
    return grown, step_scales


class OnlineHead(Learner):
    """Dense head ``y = x·W + b``: MSE for regression, softmax cross-entropy for classification."""

    def __init__(self, n_features: int, n_outputs: int, task: Task = "regression", seed: int = 0) -> None:
        if task not in ("regression", "classification"):
            raise ValueError(f"task must be 'regression' or 'classification', got {task!r}")
        if n_features <= 0 or n_outputs <= 0:
            raise ValueError("n_features and n_outputs must be positive")
        self.task: Task = task
        self.n_features = n_features
        rng = np.random.default_rng(seed)
        limit = np.sqrt(6.0 / (n_features + n_outputs))
        params = np.zeros((n_features + 1, n_outputs), np.float32)
        params[:n_features] = rng.uniform(-limit, limit, size=(n_features, n_outputs))
        self._step_scales: np.ndarray | None = None  # per-weight multipliers of the rate, stacked like params
        self._counts: np.ndarray | None = None  # imprinted samples per class (uint32), from the first imprint_one
        self._allocate(params)

    def set_step_sizes(self, scales: Mapping[str, np.ndarray] | None) -> None:
        """Per-weight multipliers of the learning rate (meta-learned, :mod:`edge.step_sizes`); None: one shared rate.

        Applied to the rank-1 update in place, so a step costs one more
        elementwise multiply and the scales one more weight-sized block of RAM.
        """
        if scales is None:
            self._step_scales = None
            return
        checked = check_scales(scales, self.get_weights())
        self._step_scales = np.vstack([checked["head_w"], checked["head_b"][None, :]]).astype(np.float32)

    @property
    def step_sizes(self) -> dict[str, np.ndarray] | None:
        if self._step_scales is None:
            return None
        return {"head_w": self._step_scales[: self.n_features].copy(), "head_b": self._step_scales[self.n_features].copy()}

    def _allocate(self, params: np.ndarray) -> None:
        """Take ``params`` (n_features + 1, n_outputs) float32 as the weights and allocate every step buffer once."""
        n_outputs = params.shape[1]
        self._params = params
        self._spare = np.empty_like(params)  # the step is written here, then swapped in if finite
        self._x1 = np.ones(self.n_features + 1, np.float32)  # [x, 1]: the bias is the last row of params
        self._x1_column = self._x1.reshape(-1, 1)
        self._x_view = self._x1[: self.n_features]
        self._z = np.empty(n_outputs, np.float32)  # logits, then exp(logits) / residuals
        self._delta = np.empty(n_outputs, np.float32)  # -learning_rate · dLoss/dlogits
        self._delta_row = self._delta.reshape(1, -1)
        self._scale = np.empty((), np.float32)  # a 0-d operand: numpy multiplies by it 3x faster than by a float
        self._ones_out = np.ones(n_outputs, np.float32)  # sums as dot products, the cheapest reduction numpy has
        self._params_norm_squared: float | None = None  # ‖P‖_F², kept by learn_one; None: recompute before use

    @property
    def _w(self) -> np.ndarray:
        return self._params[: self.n_features]

    @property
    def _b(self) -> np.ndarray:
        return self._params[self.n_features]

    @property
    def n_outputs(self) -> int:
        return int(self._params.shape[1])

    @property
    def weight_spec(self) -> WeightSpec:
        return {
            "head_w": ((self.n_features, self.n_outputs), _F32),
            "head_b": ((self.n_outputs,), _F32),
        }

    def add_class(self) -> int:
        """Grow one output class (zero-initialised, so existing predictions are unchanged); return its index."""
        if self.task != "classification":
            raise ValueError("only a classification head can grow classes")
        grown, self._step_scales = grown_by_one_class(self._params, self._step_scales)
        if self._counts is not None:  # and has imprinted nothing yet
            self._counts = np.append(self._counts, np.uint32(0))
        self._allocate(grown)
        return self.n_outputs - 1

    def _features(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 1:
            x = x.reshape(1, -1)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise InvalidInputError(f"features have shape {x.shape}; expected (n, {self.n_features})")
        check_finite("features", x)
        return x

    def logits(self, x: np.ndarray) -> np.ndarray:
        return self._features(x) @ self._w + self._b

    def predict(self, x: np.ndarray) -> np.ndarray:
        z = self.logits(x)
        return softmax(z) if self.task == "classification" else z

    def _class_index(self, y: object) -> int:
        """The class label as an index into the outputs, or a refusal that says how to fix it."""
        try:
            if isinstance(y, (bool, np.bool_)):
                raise TypeError  # an integer to operator.index, but not a class label
            index = operator.index(y)  # Python and numpy integers, no array round trip
        except TypeError:
            label = np.asarray(y)
            if label.size != 1 or label.dtype.kind not in "iu" and not (
                label.dtype.kind == "f" and float(label.reshape(-1)[0]).is_integer()
            ):
                raise InvalidInputError(f"class label must be one integer, got {y!r}") from None
            index = int(label.reshape(-1)[0])
        if not 0 <= index < self.n_outputs:
            raise InvalidInputError(
                f"class label {index} is outside 0..{self.n_outputs - 1}; call add_class() to grow the head first"
            )
        return index

    def _label(self, y: object) -> np.ndarray:
        if self.task == "regression":
            return as_float_array("label y", y, (self.n_outputs,))
        onehot = np.zeros(self.n_outputs, np.float32)
        onehot[self._class_index(y)] = 1.0
        return onehot

    def _loss_and_delta(self, x: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
        """Loss of a batch and dLoss/dlogits (per-sample mean over the batch)."""
        z = x @ self._w + self._b
        n = len(x)
        if self.task == "classification":
            p = softmax(z)
            loss = float(-np.mean(np.sum(target * np.log(np.clip(p, _MIN_PROBABILITY, 1.0)), axis=1)))
            return loss, (p - target) / n
        loss = float(np.mean((z - target) ** 2))
        return loss, 2.0 * (z - target) / (n * self.n_outputs)

    def gradients(self, x: np.ndarray, y: object) -> tuple[float, dict[str, np.ndarray]]:
        """Loss and gradient for one sample, on the batch path; tests check it against finite differences
        and :meth:`learn_one` against it."""
        features = self._features(as_float_array("sample x", x, (self.n_features,)))
        loss, delta = self._loss_and_delta(features, self._label(y).reshape(1, -1))
        return loss, {"head_w": features.T @ delta, "head_b": delta.sum(axis=0)}

    def _load_sample(self, x: object) -> None:
        """Copy the sample into the augmented input buffer; anything but a float32 (n_features,) array is
        converted (or refused) by :func:`as_float_array` first. Finiteness is checked later, on the logits."""
        if type(x) is not np.ndarray or x.dtype is not _F32 or x.shape != self._x_view.shape:
            x = as_float_array("sample x", x, (self.n_features,))
        self._x_view[...] = x

    def _refuse_sample(self, what: str, learning_rate: float | None) -> InvalidInputError:
        """The error for a step whose logits or weights came out non-finite: name the sample if it is the cause.
        ``learning_rate`` None: the step was an imprint."""
        if not np.all(np.isfinite(self._x_view)):
            bad = int(self._x_view.size - np.count_nonzero(np.isfinite(self._x_view)))
            return InvalidInputError(f"sample x contains {bad} non-finite value(s) (NaN or Inf); step refused")
        if learning_rate is None:
            return InvalidInputError(f"imprinting overflowed float32 ({what}); step refused")
        return InvalidInputError(f"SGD step diverged ({what}, learning rate {learning_rate}); step refused")

    def _check_logit_bound(self, learning_rate: float | None) -> None:
        """Refuse the sample in the input buffer unless ``‖[x, 1]‖·‖P‖_F ≤ LOGIT_BOUND`` (see the module docstring):
        the logits then cannot overflow float32 in any summation order, so the refusal is the same on every CPU.
        Two sums of squares, in float64 where float32 would overflow; a NaN sample fails the comparison."""
        if self._params_norm_squared is None:
            flat = self._params.reshape(-1).astype(np.float64)
            self._params_norm_squared = float(np.dot(flat, flat))
        x_squared = float(np.dot(self._x1, self._x1))
        if x_squared == math.inf:
            x_squared = float(np.dot(self._x1.astype(np.float64), self._x1))
        if not x_squared * self._params_norm_squared <= _LOGIT_BOUND_SQUARED:
            if not math.isfinite(x_squared):
                raise self._refuse_sample("logits not finite", learning_rate)
            bound = math.sqrt(x_squared * self._params_norm_squared)
            raise InvalidInputError(
                f"logits may overflow float32: ‖[x, 1]‖·‖[W; b]‖ = {bound:.3g} > {LOGIT_BOUND:.0e}; step refused"
            )

    def _shifted_exp(self, learning_rate: float | None) -> float:
        """exp(logits − max logit) into the logits buffer and its sum; refuses non-finite logits.

        The rare path of :meth:`learn_one` (a logit beyond ±88, or a bad sample), so it may spend an
        ``errstate``; every :meth:`imprint_one` takes it (``learning_rate`` None).
        """
        z = self._z
        with np.errstate(all="ignore"):
            np.dot(self._x1, self._params, out=z)
            if not np.all(np.isfinite(z)):
                raise self._refuse_sample("logits not finite", learning_rate)
            np.subtract(z, np.max(z), out=z)
            np.exp(z, out=z)
            return float(np.sum(z))

    def learn_one(self, x: np.ndarray, y: object, learning_rate: float) -> float:
        """One SGD step on one sample; return the loss before it.

        Non-finite logits (from a NaN/Inf sample or label, or overflow) and
        non-finite new weights are refused before the weights change; since
        the weights are always finite, a non-finite sample always gives
        non-finite logits, so one check covers both.
        """
        self._load_sample(x)
        try:
            lr = float(learning_rate)
        except (TypeError, ValueError):
            raise InvalidInputError(f"learning rate must be a number, got {learning_rate!r}") from None
        self._check_logit_bound(lr)
        z, delta = self._z, self._delta
        np.dot(self._x1, self._params, out=z)
        if self.task == "classification":
            index = self._class_index(y)
            if self._counts is not None:  # an imprinted head's logits carry ½‖x‖², far beyond exp's range: shift first
                total = self._shifted_exp(lr)
            else:
                np.exp(z, out=z)  # unshifted: exact unless a logit is beyond exp's float32 range (numpy warns; redone)
                total = float(np.dot(z, self._ones_out))
                if not 0.0 < total < math.inf:  # NaN/Inf logits, or exp under/overflow: redo it shifted by the max
                    total = self._shifted_exp(lr)
            top = z.item(index)
            loss = -math.log(max(top / total, _MIN_PROBABILITY))
            z[index] = top - total  # total · (softmax - onehot)
            self._scale[()] = -lr / total
        else:
            if type(y) is not np.ndarray or y.dtype is not _F32 or y.shape != z.shape:
                y = as_float_array("label y", y, (self.n_outputs,))
            np.subtract(z, y, out=z)
            loss = float(np.dot(z, z)) / self.n_outputs
            if not math.isfinite(loss):
                if not np.all(np.isfinite(y)):
                    raise InvalidInputError("label y contains non-finite value(s) (NaN or Inf); step refused")
                raise self._refuse_sample("loss not finite", lr)
            self._scale[()] = -2.0 * lr / self.n_outputs
        np.multiply(z, self._scale, out=delta)
        spare = self._spare
        np.dot(self._x1_column, self._delta_row, out=spare)  # outer product x1 ⊗ delta (inner dimension 1: exact)
        if self._step_scales is not None:
            np.multiply(spare, self._step_scales, out=spare)
        np.add(spare, self._params, out=spare)
        norm_squared = float(np.vdot(spare, spare))
        if not math.isfinite(norm_squared):
            # NaN/Inf, or weights whose squared norm overflows float32 (‖w‖ > 1.8e19): divergence all the same
            raise self._refuse_sample("new weights not finite", lr)
        self._params, self._spare = spare, self._params
        self._params_norm_squared = norm_squared
        return loss

    def imprint_one(self, x: np.ndarray, y: object, min_rate: float = 0.0) -> float:
        """Imprint one sample: fold its features into its class's running mean ``μ_c`` and write that class's
        column as ``w_c = μ_c``, ``b_c = −½‖μ_c‖²``; return the cross-entropy loss before the update.

        The rule of :mod:`edge.imprinting`: the logit of class ``c`` becomes
        ``½‖x‖² − ½‖x − μ_c‖²``, so a head whose classes were all imprinted is
        a nearest-class-mean classifier over the backbone's features. ``μ_c``
        moves by ``(x − μ_c) · max(1/n_c, min_rate)``: with ``min_rate`` 0 the
        exact mean of the ``n_c`` samples imprinted; with a floor, an
        exponential moving average once ``n_c > 1/min_rate`` (it follows
        drift). A class's first imprint (count 0) overwrites its column with
        ``x``, whatever it held. Costs one forward pass (for the loss) plus
        ``n_features`` multiply-adds into one column: no backward pass, no
        learning rate.

        State: one uint32 counter per class, allocated by the first call (and
        then counted in :meth:`memory_footprint`), grown by :meth:`add_class`
        (a new class starts at 0) and reset to zeros by :meth:`set_weights`
        (installed weights are not this head's imprints).

        Mixing with :meth:`learn_one` is allowed, because both act on the same
        column and neither needs the other's state: imprinting is itself one
        step on ``½‖μ_c − x‖²`` (rate ``max(1/n_c, min_rate)``) from whatever
        the column holds, so any column is a valid ``μ_c``, and SGD on the
        cross-entropy is the usual fine-tuning of a prototype initialisation
        (as Proto-MAML does). So imprinting sets a column and SGD may
        fine-tune it later. The counters count only imprinted samples: a later
        imprint of class ``c`` takes the column as it is now (fine-tuned or
        not) as ``μ_c`` and moves it toward ``x`` by ``max(1/(n_c + 1),
        min_rate)``, so SGD's changes to ``w_c`` are averaged in rather than
        lost, while ``b_c`` is recomputed as ``−½‖μ_c‖²`` (SGD's change to it
        is dropped). After SGD steps a column is no longer the exact mean of
        its ``n_c`` samples; with imprints alone it is.

        Classification heads only (a regression output has no classes:
        ValueError). A sample that is not ``n_features`` finite numbers, a
        label that is not a class index, a ``min_rate`` outside [0, 1], or a
        mean whose squared norm overflows float32 raise
        :class:`~edge.validation.InvalidInputError` with weights and counts
        unchanged. Mirrors ``tinyol_imprint_one`` in ``edge/c/tinyol_head.c``.
        """
        if self.task != "classification":
            raise ValueError("imprinting writes class means into a classification head; this head is a regressor")
        self._load_sample(x)
        index = self._class_index(y)
        try:
            rate_floor = float(min_rate)
        except (TypeError, ValueError):
            raise InvalidInputError(f"min_rate must be a number, got {min_rate!r}") from None
        if not 0.0 <= rate_floor <= 1.0:  # NaN fails too
            raise InvalidInputError(f"min_rate is a step in [0, 1], got {min_rate!r}; step refused")
        # always the shifted softmax: an imprinted class's logit carries ½‖x‖², often beyond exp's float32 range;
        # refuses a non-finite sample, or one whose logits could overflow on some CPU
        self._check_logit_bound(None)
        total = self._shifted_exp(None)
        loss = -math.log(max(self._z.item(index) / total, _MIN_PROBABILITY))
        if self._counts is None:
            self._counts = np.zeros(self.n_outputs, np.uint32)
        count = int(self._counts[index])
        count += count < _COUNT_MAX
        mean = self._spare.reshape(-1)[: self.n_features]  # the spare block as scratch: learn_one rewrites it whole
        if count == 1:
            mean[...] = self._x_view
        else:
            column = self._params[: self.n_features, index]
            self._scale[()] = max(1.0 / count, rate_floor)
            np.subtract(self._x_view, column, out=mean)
            np.multiply(mean, self._scale, out=mean)
            np.add(mean, column, out=mean)
        squared = float(np.dot(mean, mean))
        if not math.isfinite(squared):
            raise self._refuse_sample("class mean's squared norm", None)
        self._params[: self.n_features, index] = mean
        self._params[self.n_features, index] = -0.5 * squared
        self._params_norm_squared = None
        self._counts[index] = count
        return loss

    @property
    def imprint_counts(self) -> np.ndarray:
        """Samples imprinted per class so far (a copy; zeros if the head never imprinted)."""
        return np.zeros(self.n_outputs, np.uint32) if self._counts is None else self._counts.copy()

    def set_imprint_counts(self, counts: np.ndarray) -> None:
        """Resume imprinting a head whose columns are already means over ``counts`` samples per class
        (after :meth:`set_weights`, which resets them). Refused unless ``n_outputs`` integers in uint32's range."""
        array = np.asarray(counts)
        if array.shape != (self.n_outputs,) or array.dtype.kind not in "iu" or (
            array.size and (array.min() < 0 or array.max() > _COUNT_MAX)
        ):
            raise InvalidInputError(f"imprint counts must be {self.n_outputs} integers in 0..{_COUNT_MAX}, got {counts!r}")
        self._counts = array.astype(np.uint32)

    def loss(self, x: np.ndarray, y: np.ndarray) -> float:
        features = self._features(x)
        if self.task == "classification":
            labels = np.asarray(y).reshape(-1)
            target = np.stack([self._label(label) for label in labels])
        else:
            target = np.asarray(y, np.float32).reshape(len(features), self.n_outputs)
        return self._loss_and_delta(features, target)[0]

    def get_weights(self) -> dict[str, np.ndarray]:
        return {"head_w": self._w.copy(), "head_b": self._b.copy()}

    def _assign_weights(self, weights: dict[str, np.ndarray]) -> None:
        self._params[: self.n_features] = weights["head_w"]
        self._params[self.n_features] = weights["head_b"]
        self._params_norm_squared = None
        if self._counts is not None:  # installed weights are nobody's imprints: the next imprint starts each class over
            self._counts[...] = 0

    def memory_footprint(self) -> MemoryFootprint:
        """Weights; training = the second weight block the step is written into + the delta row (+ the
        step sizes, + one uint32 counter per class once the head imprints); inference = the augmented
        input [x, 1] and the logits."""
        n_params = self._params.size
        scales = n_params if self._step_scales is not None else 0
        counts = self.n_outputs * COUNT_BYTES if self._counts is not None else 0
        return MemoryFootprint(
            weights=n_params * FLOAT_BYTES,
            training=(n_params + scales + self.n_outputs) * FLOAT_BYTES + counts,
            inference=(self.n_features + 1 + self.n_outputs) * FLOAT_BYTES,
        )

    def compute_cost(self) -> ComputeCost:
        """Forward pass ``n_features·n_outputs`` MACs; an SGD step is a forward pass plus the rank-1
        update of the same size (bias MACs and the softmax are not counted). An imprint is a forward
        pass plus ``2·n_features`` (the mean's update and its squared norm)."""
        forward = self.n_features * self.n_outputs
        return ComputeCost(inference_float_macs=forward, training_float_macs=2 * forward)
