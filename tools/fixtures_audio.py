"""Audio inputs: speech WAVs (espeak-ng + sox), a 40 s synthetic signal, the 16 kHz resampler and
Whisper log-mel features from transformers (see tools/README.md).
"""

from __future__ import annotations

import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

# name -> (espeak voice, text)
SPEECH = {
    "privet_mir": ("ru", "Привет мир"),
    "english": ("en-us", "Hello world, how are you?"),
}
SYNTH_NAME = "synthetic_40s"
SYNTH_SECONDS = 40

# Clip name -> file. 44.1 kHz stereo files have a right channel at 0.8x the left.
def clip_files() -> dict[str, str]:
    out = {}
    for name in SPEECH:
        out[f"{name}_16k_mono"] = f"{name}_16k_mono.wav"
        out[f"{name}_44k_stereo"] = f"{name}_44k_stereo.wav"
    out[f"{SYNTH_NAME}_16k_mono"] = f"{SYNTH_NAME}_16k_mono.wav"
    return out


def _run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _write_wav16(path: Path, x: np.ndarray, sr: int) -> None:
    pcm = np.clip(np.round(x * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())


def synthetic_signal(seconds: int = SYNTH_SECONDS, sr: int = 16000) -> np.ndarray:
    """Chirp 100 Hz -> 6 kHz, a few steady tones switching every 5 s, and quiet noise (seed 1234)."""
    t = np.arange(seconds * sr) / sr
    f0, f1 = 100.0, 6000.0
    chirp = np.sin(2 * np.pi * (f0 * t + (f1 - f0) / (2 * seconds) * t * t))
    tones = np.zeros_like(t)
    for i, f in enumerate([220, 440, 880, 330, 1760, 523.25, 97, 3000]):
        seg = (t >= 5 * i) & (t < 5 * (i + 1))
        tones[seg] = np.sin(2 * np.pi * f * t[seg])
    noise = np.random.default_rng(1234).standard_normal(t.shape)
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 0.25 * t)
    return (0.3 * chirp + 0.25 * env * tones + 0.02 * noise).astype(np.float32)


def make_wavs(out_dir: Path) -> None:
    """Writes the WAV inputs (16-bit PCM) into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, (voice, text) in SPEECH.items():
            raw = Path(tmp) / f"{name}.wav"  # espeak-ng writes 22050 Hz mono
            _run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(raw), text])
            _run(["sox", "-D", str(raw), "-b", "16", "-r", "16000", "-c", "1", str(out_dir / f"{name}_16k_mono.wav"),
                  "rate", "-v"])
            _run(["sox", "-D", str(raw), "-b", "16", "-r", "44100", str(out_dir / f"{name}_44k_stereo.wav"),
                  "rate", "-v", "remix", "1", "1v0.8"])
    _write_wav16(out_dir / f"{SYNTH_NAME}_16k_mono.wav", synthetic_signal(), 16000)


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """16-bit PCM WAV -> float32 [channels, n] in [-1, 1) (int16 / 32768), sample rate."""
    with wave.open(str(path), "rb") as w:
        assert w.getsampwidth() == 2, path
        ch, sr, n = w.getnchannels(), w.getframerate(), w.getnframes()
        pcm = np.frombuffer(w.readframes(n), dtype="<i2").reshape(n, ch).T
    return (pcm.astype(np.float32) / np.float32(32768.0)), sr


def resample(x: np.ndarray, sr_in: int, sr_out: int, zeros: int = 16, rolloff: float = 0.94) -> np.ndarray:
    """Windowed-sinc resampler (float64 math, float32 result); documented in tools/README.md.

    n_out = floor(n_in * sr_out / sr_in); output sample j sits at input position t = j * sr_in / sr_out;
    y[j] = sum_k x[k] * h(t - k) over 0 <= k < n_in with |t - k| < zeros / fc, where
    fc = rolloff * min(1, sr_out / sr_in), h(u) = fc * sinc(fc * u) * (0.5 + 0.5 cos(pi * u * fc / zeros)),
    sinc(v) = sin(pi v) / (pi v).
    """
    if sr_in == sr_out:
        return x.astype(np.float32)
    x = np.asarray(x, dtype=np.float64)
    n_out = (len(x) * sr_out) // sr_in
    fc = rolloff * min(1.0, sr_out / sr_in)
    half = zeros / fc
    t = np.arange(n_out, dtype=np.float64) * sr_in / sr_out
    k0 = np.ceil(t - half).astype(np.int64)
    width = int(np.ceil(2 * half)) + 1
    k = k0[:, None] + np.arange(width)[None, :]
    u = t[:, None] - k
    h = fc * np.sinc(fc * u) * (0.5 + 0.5 * np.cos(np.pi * u * fc / zeros))
    h[np.abs(u) >= half] = 0.0
    valid = (k >= 0) & (k < len(x))
    xs = np.where(valid, x[np.clip(k, 0, len(x) - 1)], 0.0)
    return (xs * h).sum(axis=1).astype(np.float32)


def load_16k(path: Path) -> tuple[np.ndarray, dict]:
    """WAV -> 16 kHz mono float32: channels averaged (float32 mean), then `resample` if needed."""
    x, sr = read_wav(path)
    mono = x.mean(axis=0, dtype=np.float32) if x.shape[0] > 1 else x[0]
    y = resample(mono, sr, 16000)
    return y, {"sample_rate": sr, "channels": int(x.shape[0]), "n_samples_in": int(x.shape[1]),
               "n_samples_16k": int(len(y))}


def feature_extractor():
    from transformers import WhisperFeatureExtractor

    # preprocessor_config.json values of the real checkpoint (spec §2.2).
    return WhisperFeatureExtractor(feature_size=128, sampling_rate=16000, hop_length=160, n_fft=400,
                                   chunk_length=300, n_samples=4_800_000, nb_max_frames=30000,
                                   padding_value=0.0, dither=0.0, return_attention_mask=True)


def log_mel(fe, wave16k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The processor's call (spec §4.1/§11.3) -> (mel float32 [128, T], mask [T])."""
    out = fe(wave16k, sampling_rate=16000, padding=True, truncation=False, return_attention_mask=True,
             return_tensors="np")
    mel = out["input_features"][0].astype(np.float32)
    mask = out["attention_mask"][0].astype(np.int32)
    assert mel.shape[1] == len(wave16k) // 160 == mask.sum(), (mel.shape, len(wave16k), mask.sum())
    return mel, mask


def _slaney_mel(f):
    f = np.asarray(f, dtype=np.float64)
    lin = 3.0 * f / 200.0
    log = 15.0 + 27.0 * np.log(np.maximum(f, 1e-10) / 1000.0) / np.log(6.4)
    return np.where(f < 1000.0, lin, log)


def _slaney_hz(m):
    m = np.asarray(m, dtype=np.float64)
    lin = 200.0 * m / 3.0
    log = 1000.0 * np.exp(np.log(6.4) * (m - 15.0) / 27.0)
    return np.where(m < 15.0, lin, log)


def spec_log_mel(x: np.ndarray, n_mels: int = 128) -> np.ndarray:
    """Independent float64 implementation of spec §4.1, used to confirm the spec against transformers."""
    n_fft, hop, sr = 400, 160, 16000
    x = np.asarray(x, dtype=np.float64)
    xp = np.pad(x, (n_fft // 2, n_fft // 2), mode="reflect")
    n_frames = 1 + len(x) // hop
    idx = np.arange(n_frames)[:, None] * hop + np.arange(n_fft)[None, :]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
    power = np.abs(np.fft.rfft(xp[idx] * window, axis=1)) ** 2  # [frames, 201]
    power = power[:-1]  # drop the last frame
    fft_f = np.linspace(0, sr / 2, n_fft // 2 + 1)
    pts = _slaney_hz(np.linspace(_slaney_mel(0.0), _slaney_mel(8000.0), n_mels + 2))
    lo, c, hi = pts[:-2, None], pts[1:-1, None], pts[2:, None]
    fb = np.maximum(0.0, np.minimum((fft_f - lo) / (c - lo), (hi - fft_f) / (hi - c)))
    fb *= (2.0 / (hi - lo))  # Slaney area normalisation
    mel = fb @ power.T  # [n_mels, T]
    lg = np.log10(np.maximum(mel, 1e-10))
    lg = np.maximum(lg, lg.max() - 8.0)
    return ((lg + 4.0) / 4.0).astype(np.float32)
