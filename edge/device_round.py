"""The device round: one function every transport calls, and the C firmware mirrors.

Given a :class:`edge.round_contract.RoundRequest` and the θ that came with it,
a device

1. rebuilds its private part from its firmware's local init, if the request
   names one (TinyMetaFed's partial local reconstruction: SGD, or imprinting a
   classifier's output layer);
2. adapts online on fresh samples of its stream (``epochs`` passes, FedAvg's
   local epochs), scoring θ before and after on ``probe`` held-back samples;
3. measures the step sizes' hypergradient on its next samples, if asked;
4. books the round: compute from its profile, bytes as the lengths of the
   wire payloads its reply needs (:func:`edge.wire.encoded_size`), energy from
   both;

and returns a :class:`edge.round_contract.RoundReply`. With no private part
the adaptation is exactly :func:`edge.adaptation.adapt_online`.

Every check that can refuse the request runs before the device's learner,
stream or ledger is touched, and refuses with :class:`edge.wire.WireFormatError`:
a bad request costs the device nothing.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

import numpy as np

from edge import record_keys as keys
from edge.device import Ledger, SimulatedDevice
from edge.imprinting import check_imprintable
from edge.learner import Learner
from edge.mlp import NumpyMLP, regression_gradients
from edge.mlp_classifier import MLPClassifier
from edge.reconstruction import reconstruct_and_adapt, split_weights
from edge.round_contract import RoundReply, RoundRequest, StepSizeRequest, Weights
from edge.step_sizes import check_scales, stream_hypergradient
from edge.validation import InvalidInputError, WeightSpec, check_weights
from edge.wire import SparseTensor, WireFormatError, encoded_size, top_p_sparsify

log = logging.getLogger(__name__)


def shared_spec(learner: Learner, private_names: Sequence[str]) -> WeightSpec:
    """The part of the device's own weight table the server sends; refuses private names it does not have."""
    local = dict(learner.weight_spec)
    unknown = sorted(set(private_names) - set(local))
    if unknown:
        raise WireFormatError(WireFormatError.SPEC_MISMATCH, f"private names {unknown} are not weights of this firmware")
    return {k: v for k, v in local.items() if k not in private_names}


def check_theta(learner: Learner, request: RoundRequest, theta: Mapping[str, np.ndarray]) -> Weights:
    """θ checked against the shared part of the device's weight table (names, shapes, dtypes, finite)."""
    try:
        return check_weights(theta, shared_spec(learner, request.private_names))
    except InvalidInputError as exc:
        raise WireFormatError(WireFormatError.SPEC_MISMATCH, str(exc)) from exc


def check_step_sizes(learner: Learner, plan: StepSizeRequest, scales: Mapping[str, np.ndarray] | None, theta: Weights) -> Weights:
    """The step sizes a whole-model training round measures, checked against θ and the learner."""
    if not isinstance(learner, NumpyMLP) or isinstance(learner, MLPClassifier):
        raise WireFormatError(
            WireFormatError.BAD_FIELD,
            f"learner {type(learner).__name__} cannot measure step-size hypergradients (needs the numpy regressor)",
        )
    if scales is None:
        raise WireFormatError(WireFormatError.BAD_FIELD, "the round asks for step sizes but none came")
    try:
        return check_scales(scales, theta)
    except InvalidInputError as exc:
        raise WireFormatError(WireFormatError.SPEC_MISMATCH, str(exc)) from exc


def measure_hypergradient(device: SimulatedDevice, theta: Mapping[str, np.ndarray], scales: Mapping[str, np.ndarray],
                          plan: StepSizeRequest) -> tuple[Weights, float]:
    """d(query loss after K online steps from θ)/d(log step size) on the device's next K + Q samples, and that loss.

    The samples are the ones after the round's own, so θ's update and the step
    sizes' never see the same sample. Books the compute (3·K + Q gradient
    evaluations on K + Q samples).
    """
    learner = device.learner
    assert isinstance(learner, NumpyMLP), "check the plan against the learner first"
    hypergradient, query_loss = stream_hypergradient(
        theta, scales, plan.base_rate, device.stream, plan.shots, plan.query, regression_gradients(learner.layer_sizes)
    )
    device.charge_compute(steps=3 * plan.shots + plan.query, evaluations=0, samples=plan.shots + plan.query)
    return hypergradient, query_loss


def run_device_round(
    device: SimulatedDevice,
    request: RoundRequest,
    theta: Mapping[str, np.ndarray],
    *,
    received_bytes: int,
    private_init: Mapping[str, np.ndarray] | None = None,
    step_sizes: Mapping[str, np.ndarray] | None = None,
) -> RoundReply:
    """One round on ``device`` (its model deployed); WireFormatError, before anything changes, if refused.

    ``theta`` is the shared part the server sent (the whole model when the
    request names no private part); ``private_init`` the firmware's own
    weights, from which the private part is rebuilt; ``step_sizes`` the
    per-weight multipliers sent with θ when the request measures them.
    ``received_bytes`` is what the transport delivered (payload lengths).
    """
    learner = device.learner
    if learner is None:
        raise RuntimeError(f"device {device.device_id} has no model deployed")
    theta = check_theta(learner, request, theta)
    private: dict[str, np.ndarray] = {}
    if request.private_names:
        if private_init is None:
            raise WireFormatError(WireFormatError.BAD_FIELD, "the round names private weights but the device has no local init")
        _, private = split_weights(private_init, request.private_names)
        if request.reconstruction_rule == "imprint":
            try:
                check_imprintable(learner, request.private_names)
            except ValueError as exc:
                raise WireFormatError(WireFormatError.BAD_FIELD, str(exc)) from exc
    scales = None
    if request.measures_step_sizes:
        assert request.step_sizes is not None
        scales = check_step_sizes(learner, request.step_sizes, step_sizes, theta)

    at_start = Ledger(**vars(device.ledger))
    if request.radio:
        device.ledger.bytes_received += received_bytes
    phi, report = reconstruct_and_adapt(
        learner, theta, private, device.stream,
        reconstruction_samples=request.reconstruction_samples, reconstruction_lr=request.reconstruction_lr,
        shots=request.shots, learning_rate=request.learning_rate, probe=request.probe,
        rule=request.reconstruction_rule, epochs=request.epochs,
    )  # fmt: skip
    samples = request.reconstruction_samples + request.shots
    steps = request.reconstruction_samples + request.shots * request.epochs
    device.charge_compute(steps=steps, evaluations=2 * request.probe, samples=samples + request.probe)

    hypergradient, query_loss = None, None
    if scales is not None:
        assert request.step_sizes is not None
        hypergradient, query_loss = measure_hypergradient(device, theta, scales, request.step_sizes)
        if not all(np.all(np.isfinite(v)) for v in hypergradient.values()) or not math.isfinite(query_loss):
            log.warning("%s measured no usable hypergradient in round %d; its update goes alone", device.device_id, request.round_id)
            hypergradient, query_loss = None, None

    weights, sparse = _update(request, theta, phi)
    metrics = {
        keys.LOSS_BEFORE: report.loss_before,
        keys.LOSS_AFTER: report.loss_after,
        keys.PREQUENTIAL_LOSS: report.prequential_loss,
    }
    if request.private_names:
        metrics[keys.RECONSTRUCTION_LOSS] = report.reconstruction_loss
    metrics = {k: float(v) for k, v in metrics.items() if np.isfinite(v)}  # no probe -> no probe losses
    if request.radio:
        device.send(reply_payload_bytes(device.device_id, request, weights, sparse, metrics, hypergradient))
    cost = device.close_round(at_start)
    return RoundReply(
        device_id=device.device_id,
        round_id=request.round_id,
        weights=weights,
        sparse_delta=sparse,
        metrics=metrics,
        num_examples=report.samples_used,
        bytes_sent=device.ledger.bytes_sent - at_start.bytes_sent,
        bytes_received=device.ledger.bytes_received - at_start.bytes_received,
        time_s=cost.compute_s + cost.radio_s,
        energy_j=cost.energy_j,
        hypergradient=hypergradient,
        step_size_query_loss=query_loss,
    )


def _update(request: RoundRequest, theta: Weights, phi: Weights) -> tuple[Weights | None, dict[str, SparseTensor] | None]:
    """(φ, None) for a dense reply, (None, Top-P of φ − θ) for a sparse one, (None, None) when evaluating."""
    if request.evaluate:
        return None, None
    if request.top_p is not None:
        delta = {k: (phi[k] - theta[k]).astype(theta[k].dtype) for k in theta}
        return None, top_p_sparsify(delta, request.top_p)
    return phi, None


def reply_payload_bytes(device_id: str, request: RoundRequest, weights: Weights | None,
                        sparse: dict[str, SparseTensor] | None, metrics: Mapping[str, float],
                        hypergradient: Weights | None) -> int:
    """Bytes the reply costs on the radio: its UPDATE payload, plus the HYPERGRADIENT payload sent before it.

    Metric values do not change a payload's length, only their names do, so
    the size is known before the round's time and energy (which include it) are.
    """
    names = dict.fromkeys([*metrics, keys.DEVICE_TIME_S, keys.DEVICE_ENERGY_J], 0.0)
    size = encoded_size(weights, sparse=sparse, device_id=device_id, metrics=names)
    if hypergradient is not None:
        size += encoded_size(hypergradient, device_id=device_id, metrics={keys.STEP_SIZE_QUERY_LOSS: 0.0})
    return size
