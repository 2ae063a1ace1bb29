"""The device front end (numpy) against the training path (``tf.signal``).

Tolerances are measured, not guessed (float32 FFTs summed in different orders):
worst relative mel-power error 8.5e-5, worst log-mel error 1.1e-3 nats and worst
MFCC error 6.1e-4, all on the pure chirp in bands ~100 dB below its peak; on
noisy clips every error is below 3e-5. The bounds leave ~5× headroom while a
real divergence fails loudly; measured on the chirp: symmetric Hann window moves
MFCCs by 0.32, keeping the DC bin moves log-mel by 0.28, a 1 % band-edge error by
3.0, the wrong DCT scale by 45.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from edge.features import FrontEnd, FrontEndConfig, frame_signal, hann_window, mel_weight_matrix

tf = pytest.importorskip("tensorflow")

LOG_MEL_ATOL = 5e-3
MFCC_ATOL = 3e-3
MEL_REL_TOL = 5e-4


def _clips() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    t = np.arange(16_000) / 16_000
    chirp = 0.5 * np.sin(2 * np.pi * (200 + 1800 * t) * t)
    return {
        "noise": (0.1 * rng.normal(size=16_000)).astype(np.float32),
        "chirp": chirp.astype(np.float32),
        "tone_in_noise": (0.3 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.normal(size=16_000)).astype(np.float32),
        "silence": np.zeros(16_000, np.float32),
    }


def _tf_features(signal: np.ndarray, c: FrontEndConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    stft = tf.signal.stft(signal, frame_length=c.frame_length, frame_step=c.frame_step, fft_length=c.fft_length)
    power = tf.abs(stft) ** 2
    weights = tf.signal.linear_to_mel_weight_matrix(
        c.num_mel_bins, c.num_spectrogram_bins, c.sample_rate, c.lower_edge_hertz, c.upper_edge_hertz
    )
    mel = tf.tensordot(power, weights, 1)
    log_mel = tf.math.log(mel + c.log_offset)
    mfcc = tf.signal.mfccs_from_log_mel_spectrograms(log_mel)[..., : c.num_mfccs]
    return mel.numpy(), log_mel.numpy(), mfcc.numpy()


def test_building_blocks_match_tf():
    c = FrontEndConfig()
    np.testing.assert_allclose(hann_window(480), tf.signal.hann_window(480).numpy(), atol=1e-6)
    ours = mel_weight_matrix(40, 257, 16_000, 20.0, 4_000.0)
    theirs = tf.signal.linear_to_mel_weight_matrix(40, 257, 16_000, 20.0, 4_000.0).numpy()
    np.testing.assert_allclose(ours, theirs, atol=2e-5)  # TF builds it in float32: measured 5.9e-6
    x = np.arange(2_000, dtype=np.float32)
    np.testing.assert_array_equal(frame_signal(x, 480, 320), tf.signal.frame(x, 480, 320).numpy())
    assert c.num_frames(16_000) == 49


@pytest.mark.parametrize(
    "config",
    [FrontEndConfig(), FrontEndConfig(frame_length=640, frame_step=320, fft_length=1024, num_mel_bins=64,
                                      lower_edge_hertz=60.0, upper_edge_hertz=7_600.0, num_mfccs=13)],
    ids=["kws-default", "wideband"],
)
def test_log_mel_and_mfcc_match_tf(config: FrontEndConfig):
    front = FrontEnd(config)
    for name, clip in _clips().items():
        mel_tf, log_mel_tf, mfcc_tf = _tf_features(clip, config)
        mel = front.mel_spectrogram(clip)
        assert mel.shape == mel_tf.shape == (config.num_frames(clip.size), config.num_mel_bins), name
        assert front.mfcc(clip).dtype == np.float32
        scale = np.maximum(mel_tf, mel_tf.max() * 1e-6 + 1e-12)
        assert np.max(np.abs(mel - mel_tf) / scale) < MEL_REL_TOL, name
        assert np.max(np.abs(front.log_mel(clip) - log_mel_tf)) < LOG_MEL_ATOL, name
        assert np.max(np.abs(front.mfcc(clip) - mfcc_tf)) < MFCC_ATOL, name


def test_features_change_with_content_and_reject_bad_input():
    front = FrontEnd()
    clips = _clips()
    assert np.abs(front.mfcc(clips["chirp"]) - front.mfcc(clips["noise"])).max() > 1.0
    assert front.mfcc(np.zeros(100, np.float32)).shape == (0, 10)
    with pytest.raises(ValueError):
        front.mfcc(np.zeros((2, 16_000), np.float32))
    with pytest.raises(ValueError):
        front.mfcc(np.full(16_000, np.nan, np.float32))
    assert front.nbytes == 4 * (480 + 257 * 40 + 40 * 10)


def test_front_end_imports_without_tensorflow():
    script = "import sys; sys.modules['tensorflow'] = None; import edge.features as f; print(f.FrontEnd().mfcc([0.0] * 16000).shape)"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(49, 10)"
