"""Audio decoding, resampling and the mel-spectrogram against an independent numpy DFT."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from mesm.data.errors import DataError
from mesm.data.media.audio import (
    check_waveform,
    chunk_spectrogram,
    load_audio,
    load_video_audio,
    mel_spectrogram,
    resample,
)
from mesm.demo.synthetic import face_frames, write_video


def _reference_mel(x: np.ndarray, sr=16000, n_fft=400, hop=200, n_mels=128) -> np.ndarray:
    """Direct DFT formula, float64, written independently of torch.stft and our filterbank."""
    pad = n_fft // 2
    padded = np.pad(x.astype(np.float64), pad, mode="reflect")
    n_frames = 1 + len(x) // hop
    n = np.arange(n_fft)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)  # periodic Hann
    k = np.arange(n_fft // 2 + 1)
    dft = np.exp(-2j * np.pi * np.outer(k, n) / n_fft)  # (bins, n_fft)
    power = np.empty((len(k), n_frames))
    for f in range(n_frames):
        frame = padded[f * hop : f * hop + n_fft] * window
        power[:, f] = np.abs(dft @ frame) ** 2
    # HTK triangles between mel-spaced edges, peak 1, no area normalisation.
    mel_edges = np.linspace(0, 2595 * np.log10(1 + (sr / 2) / 700), n_mels + 2)
    hz_edges = 700 * (10 ** (mel_edges / 2595) - 1)
    freqs = k * sr / n_fft
    fb = np.zeros((n_mels, len(k)))
    for m in range(n_mels):
        lo, mid, hi = hz_edges[m], hz_edges[m + 1], hz_edges[m + 2]
        for b, f in enumerate(freqs):
            if lo < f <= mid:
                fb[m, b] = (f - lo) / (mid - lo)
            elif mid < f < hi:
                fb[m, b] = (hi - f) / (hi - mid)
    return fb @ power


@pytest.mark.parametrize("length", [16000, 7777, 401])
def test_mel_matches_direct_dft(length):
    rng = np.random.default_rng(length)
    t = np.arange(length) / 16000
    x = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * rng.standard_normal(length)
    ours = mel_spectrogram(torch.from_numpy(x.astype(np.float32))).double().numpy()
    ref = _reference_mel(x.astype(np.float32))
    assert ours.shape == ref.shape == (128, 1 + length // 200)
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4 * 1e-6 * ref.max())


def test_log_mel_is_log_of_mel_plus_eps():
    x = torch.randn(3200)
    mel = mel_spectrogram(x)
    np.testing.assert_allclose(
        mel_spectrogram(x, log=True, log_eps=1e-6), torch.log(mel.double() + 1e-6), rtol=1e-5
    )


def test_chunks_are_32_frames_and_the_last_is_zero_padded():
    spec = torch.arange(128 * 70, dtype=torch.float32).reshape(128, 70) + 1
    chunks = chunk_spectrogram(spec, 32)
    assert chunks.shape == (3, 1, 128, 32)
    torch.testing.assert_close(chunks[1, 0], spec[:, 32:64])
    torch.testing.assert_close(chunks[2, 0, :, :6], spec[:, 64:70])
    assert chunks[2, 0, :, 6:].abs().sum() == 0


@pytest.mark.parametrize("orig_sr", [44100, 48000, 22050, 8000])
def test_resampler_reproduces_a_band_limited_signal(orig_sr):
    t = np.arange(orig_sr) / orig_sr  # 1 s
    x = np.sin(2 * np.pi * 440 * t) + 0.5 * np.sin(2 * np.pi * 2500 * t)
    y = resample(torch.from_numpy(x), orig_sr, 16000).numpy()
    assert y.shape == (16000,)
    tt = np.arange(16000) / 16000
    ref = np.sin(2 * np.pi * 440 * tt) + 0.5 * np.sin(2 * np.pi * 2500 * tt)
    assert np.abs(y - ref)[400:-400].max() < 1e-3


def test_resampler_removes_what_the_new_rate_cannot_hold():
    t = np.arange(48000) / 48000
    y = resample(torch.from_numpy(np.sin(2 * np.pi * 9000 * t)), 48000, 16000).numpy()
    assert np.abs(y[400:-400]).max() < 1e-3  # 9 kHz > 8 kHz Nyquist: must not alias to 7 kHz


def test_load_audio_mixes_to_mono_and_cuts_spans(tmp_path):
    left = np.linspace(-0.5, 0.5, 8000, dtype=np.float32)
    path = tmp_path / "s.wav"
    sf.write(path, np.stack([left, np.full(8000, 0.25, np.float32)], axis=1), 8000, subtype="FLOAT")
    wave, sr = load_audio(path, start=0.25, end=0.5)
    assert sr == 8000 and wave.shape == (2000,)
    np.testing.assert_allclose(wave, (left[2000:4000] + 0.25) / 2, atol=1e-6)


def test_video_audio_track_is_decoded_on_its_own_clock(tmp_path):
    audio = np.zeros(32000, np.float32)
    audio[20000:20040] = 0.9  # a click at 1.25 s
    path = tmp_path / "click.mp4"
    write_video(path, face_frames(20, 10), 10, audio, 16000)
    wave, sr = load_video_audio(path)
    assert sr == 16000 and abs(len(wave) - 32000) <= 16  # encoder padding trimmed
    assert abs(int(np.argmax(np.abs(wave))) - 20000) < 40
    part, _ = load_video_audio(path, start=1.0, end=1.5)
    assert part.shape == (8000,)
    assert abs(int(np.argmax(np.abs(part))) - 4000) < 40


def test_video_without_audio_track_says_so(tmp_path):
    path = tmp_path / "mute.mp4"
    write_video(path, face_frames(5, 10), 10)
    with pytest.raises(DataError, match=r"mute\.mp4: has no audio track"):
        load_video_audio(path)


def test_nan_and_empty_audio_are_refused():
    with pytest.raises(DataError, match=r"x\.wav: the audio contains 2 NaN/infinite"):
        check_waveform(np.array([0.0, math.nan, 1.0, math.inf], np.float32), "x.wav")
    with pytest.raises(DataError, match="no samples"):
        check_waveform(np.zeros(0, np.float32), "x.wav")


def test_audio_span_outside_the_file_is_an_error(tmp_path):
    path = tmp_path / "short.wav"
    sf.write(path, np.zeros(1600, np.float32), 16000)
    with pytest.raises(DataError, match=r"short\.wav: no audio samples in the time span"):
        load_audio(path, start=0.5, end=0.8)
