"""On-device learning: what runs on a microcontroller or a Linux-class device.

Importable without TensorFlow and without Flower; interpreters are imported
lazily by :mod:`edge.tflite_runtime` only when a model is loaded.
"""
