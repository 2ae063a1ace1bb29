"""Audio feature front end for keyword spotting, in numpy only.

The device computes the same log-mel / MFCC features the backbone was trained
on; a mismatch between the two paths silently costs accuracy, so the maths
here follows ``tf.signal`` step for step and a test holds them together.
"""

from edge.features.frontend import FrontEnd, FrontEndConfig
from edge.features.mel import hertz_to_mel, mel_weight_matrix
from edge.features.mfcc import dct_ii_matrix
from edge.features.stft import frame_signal, hann_window, power_spectrogram

__all__ = [
    "FrontEnd",
    "FrontEndConfig",
    "dct_ii_matrix",
    "frame_signal",
    "hann_window",
    "hertz_to_mel",
    "mel_weight_matrix",
    "power_spectrogram",
]
