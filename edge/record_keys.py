"""Names of the fields exchanged between a server strategy and a device.

Shared by every side (strategies, Flower ClientApps, MQTT firmware) so a
renamed key is a one-line change and a typo is an import error, not a silent
missing metric. Kebab-case as in Flower's own records.
"""

ARRAYS = "arrays"
CONFIG = "config"
METRICS = "metrics"

# config sent with a training/evaluation request
SERVER_ROUND = "server-round"
INNER_LEARNING_RATE = "inner-learning-rate"  # one name for the knob: run config, ConfigRecord and task JSON
STREAM_SAMPLES = "stream-samples"
PROBE_SAMPLES = "probe-samples"
LOCAL_EPOCHS = "local-epochs"
DEVICE_SEED_BASE = "device-seed-base"
TASK = "task"  # config: which task the devices learn (firmware_sim.device_tasks); a device of another task refuses
RADIO = "radio"  # config: False for a device that learns alone (local-only): it neither receives nor sends a model

# metrics returned by a device
NUM_EXAMPLES = "num-examples"  # Flower's FedAvg weights by this key
LOSS_BEFORE = "loss-before"
LOSS_AFTER = "loss-after"
PREQUENTIAL_LOSS = "prequential-loss"
SAMPLES_USED = "samples-used"
BYTES_RECEIVED = "bytes-received"
BYTES_SENT = "bytes-sent"
DEVICE_TIME_S = "device-time-s"
DEVICE_ENERGY_J = "device-energy-j"
LEARNER = "learner"  # "numpy" or "tflite"
MODEL_PATH = "model-path"  # training .tflite for the "tflite" learner
DRIFT_PER_SAMPLE = "drift-per-sample"
PROFILE = "profile"

# TinyMetaFed (partial local reconstruction + Top-P% selective communication)
SPARSE_DELTA = "sparse-delta"  # ArrayRecord of a sparse update: "<name>.indices" + "<name>.values"
TOP_P = "top-p"  # kept fraction of the update entries, (0, 1]; 1.0 = dense
PRIVATE_NAMES = "private-names"  # comma-separated weight names rebuilt on the device, never sent
RECONSTRUCTION_SAMPLES = "reconstruction-samples"
RECONSTRUCTION_LR = "reconstruction-lr"
RECONSTRUCTION_RULE = "reconstruction-rule"  # "sgd" (absent) or "imprint": how the private part is rebuilt
RECONSTRUCTION_LOSS = "reconstruction-loss"
LAYER_SIZES = "layer-sizes"  # "1,40,40,1": the model a device builds its private part for
MESSAGE_TYPE = "message-type"  # task hyperparameter over MQTT: "train" or "evaluate"
DEVICE_SEEDS = "device-seeds"  # config: the Flower node with partition-id i plays device DEVICE_SEEDS[i]
DEVICE_SEED = "device-seed"  # metric: which device replied (for provenance); never averaged

# Meta-learned per-weight step sizes (TinyReptile with ``step_size_learning_rate`` > 0; see edge/step_sizes.py)
STEP_SIZES = "step-sizes"  # ArrayRecord sent with θ: per-weight multipliers of the adaptation rate
HYPERGRADIENT = "hypergradient"  # ArrayRecord in the reply (HYPERGRADIENT payload over MQTT): d(query loss)/d(log step size)
STEP_SIZE_BASE_RATE = "step-size-base-rate"  # config: the shared rate the step sizes multiply
STEP_SIZE_SHOTS = "step-size-shots"  # config: online steps the hypergradient differentiates through
STEP_SIZE_QUERY = "step-size-query"  # config: samples the adapted model is scored on
STEP_SIZE_QUERY_LOSS = "step-size-query-loss"  # metric: that score
