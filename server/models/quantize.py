"""Full-integer int8 conversion, the one way every TinyFleet backbone is quantised for microcontrollers."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import tensorflow as tf


def convert_full_int8(converter: tf.lite.TFLiteConverter, samples: np.ndarray) -> bytes:
    """int8 weights, activations, input and output, calibrated on ``samples`` (n, features) fed one row at a time."""

    def dataset() -> Iterator[list[np.ndarray]]:
        for row in samples:
            yield [row.reshape(1, -1)]

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()
