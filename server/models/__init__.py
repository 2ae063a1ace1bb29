"""Model builders that export TFLite files for devices.

Submodules import TensorFlow; this package itself does not, so that importing
``server.models`` to reach a name does not pay for TensorFlow until a model is
actually built.
"""
