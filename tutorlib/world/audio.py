"""Sounds of scenes: each object a tone whose pitch, timbre, loudness, onset, tremolo
and glide follow its attributes; and log-mel features of waveforms."""
from __future__ import annotations

import torch

from ..core import _validate
from ..core.runtime import settings
from .scenes import Scenes

PITCH_HZ = torch.tensor([220.0, 277.2, 349.2, 440.0, 554.4, 698.5])   # by colour
TIMBRE = torch.tensor([                                               # harmonic amplitudes by shape
    [1.0, 0.0, 0.0, 0.0, 0.0, 0.0],      # circle: pure sine
    [1.0, 0.0, 0.33, 0.0, 0.2, 0.0],     # square: odd harmonics 1/k
    [1.0, 0.0, 0.11, 0.0, 0.04, 0.0],    # triangle: odd harmonics 1/k^2
    [1.0, 0.7, 0.0, 0.0, 0.0, 0.0],      # diamond: octave
    [0.6, 0.0, 0.0, 1.0, 0.0, 0.0],      # cross: strong 4th harmonic
    [1.0, 0.5, 0.33, 0.25, 0.2, 0.17],   # star: sawtooth 1/k
])
LOUDNESS = torch.tensor([0.35, 0.9])                                  # by size
TREMOLO_HZ = torch.tensor([0.0, 24.0, 48.0])                          # by grid row

_MEL_CACHE: dict = {}


def _audio_curves(sr: int, n_samples: int, dur: float):
    """Per (motion, column, row): the cumulative pitch glide ``[5, 3, L]`` and the
    amplitude envelope ``[5, 3, 3, L]`` (onset, swell or decay, tremolo, fades)."""
    t = torch.arange(n_samples, dtype=torch.float32) / sr
    col = torch.arange(3, dtype=torch.float32)[:, None]
    local = (t[None] - col * dur / 4) / (dur / 2)                     # [3, L]: 0..1 over the tone
    on = ((local >= 0) & (local < 1)).float()
    lc = local.clamp(0, 1)
    glide = torch.stack([torch.ones_like(lc), torch.ones_like(lc), torch.ones_like(lc),
                         1 + 0.25 * lc, 1 - 0.2 * lc])                # still, left, right, up, down
    cum_glide = torch.cumsum(glide, -1) / sr                          # seconds, bent by the glide
    swell = torch.stack([torch.ones_like(lc), 1 - 0.8 * lc, 0.2 + 0.8 * lc,
                         torch.ones_like(lc), torch.ones_like(lc)])   # [5, 3, L]
    trem = 1 - 0.5 * (TREMOLO_HZ[:, None] > 0) * (0.5 + 0.5 * torch.cos(
        2 * torch.pi * TREMOLO_HZ[:, None] * t))
    fade = (local * 20).clamp(0, 1) * ((1 - local) * 20).clamp(0, 1) * on  # [3, L]
    env = swell[:, :, None, :] * trem[None, None] * fade[None, :, None, :]
    return cum_glide, env


def _tone(phase: torch.Tensor, harm: torch.Tensor) -> torch.Tensor:
    """``sum_k harm[:, k] sin((k + 1) phase)`` for phases ``[K, L]`` and amplitudes ``[K, H]``,
    by the recurrence sin((k+1)x) = 2 cos(x) sin(kx) - sin((k-1)x)."""
    s_prev, s_k, two_cos = torch.zeros_like(phase), torch.sin(phase), 2 * torch.cos(phase)
    tone = harm[:, :1] * s_k
    for k in range(1, harm.shape[1]):
        s_prev, s_k = s_k, two_cos * s_k - s_prev
        tone += harm[:, k:k + 1] * s_k
    return tone


def render_audio(scenes: Scenes, sample_rate: int | None = None,
                 duration: float | None = None) -> torch.Tensor:
    """Synthesise a mono waveform ``[N, L]`` per scene, each object a tone:
    pitch from colour, timbre (harmonics) from shape, loudness from size,
    onset from grid column, tremolo rate from grid row, a glide (up/down) or a
    swell/decay (right/left) from motion. Two-object scenes sum both tones.
    ``sample_rate`` and ``duration`` default to the profile's settings."""
    if not isinstance(scenes, Scenes):
        raise ValueError(f"scenes: got {type(scenes).__name__}, expected a world.Scenes")
    sr = (settings().sample_rate if sample_rate is None
          else _validate.positive_int("sample_rate", sample_rate))
    dur = (settings().duration if duration is None
           else _validate.positive_number("duration", duration))
    n_samples = int(round(sr * dur))
    cum_glide, env = _audio_curves(sr, n_samples, dur)
    wave = torch.zeros(len(scenes), n_samples)
    for slot in (0, 1):
        idx = torch.nonzero(scenes.shape[:, slot] >= 0).squeeze(1)
        if len(idx) == 0:
            continue
        pos, mot = scenes.position[idx, slot], scenes.motion[idx, slot]
        phase = ((2 * torch.pi * PITCH_HZ[scenes.colour[idx, slot]])[:, None]
                 * cum_glide[mot, pos % 3])
        harm = TIMBRE[scenes.shape[idx, slot]]
        tone = _tone(phase, harm / harm.sum(1, keepdim=True))
        gain = LOUDNESS[scenes.size[idx, slot]][:, None]
        wave[idx] += gain * tone * env[mot, pos % 3, pos // 3]
    return wave


def _mel_bank(sr: int, n_mels: int, n_fft: int) -> torch.Tensor:
    """The slaney mel filter bank ``[n_fft // 2 + 1, n_mels]``, built once per setting."""
    k = (sr, n_mels, n_fft)
    if k not in _MEL_CACHE:
        from transformers.audio_utils import mel_filter_bank
        fb = mel_filter_bank(num_frequency_bins=n_fft // 2 + 1, num_mel_filters=n_mels,
                             min_frequency=50.0, max_frequency=sr / 2, sampling_rate=sr,
                             norm="slaney", mel_scale="slaney")
        _MEL_CACHE[k] = torch.tensor(fb, dtype=torch.float32)           # [F, M]
    return _MEL_CACHE[k]


def log_mel(wave: torch.Tensor, sample_rate: int | None = None, n_mels: int | None = None,
            n_fft: int | None = None, hop: int | None = None) -> torch.Tensor:
    """Log-mel spectrogram features ``[N, n_mels, frames]`` of waveforms ``[N, L]``.

    Unset arguments take the profile's settings (``tutorlib.settings()``). The mel
    filter bank comes from ``transformers.audio_utils.mel_filter_bank``.
    """
    _validate.tensor("wave", wave, 2)
    s = settings()
    sr = (s.sample_rate if sample_rate is None
          else _validate.positive_int("sample_rate", sample_rate))
    n_mels = s.n_mels if n_mels is None else _validate.positive_int("n_mels", n_mels)
    n_fft = s.n_fft if n_fft is None else _validate.positive_int("n_fft", n_fft)
    hop = s.hop if hop is None else _validate.positive_int("hop", hop)
    spec = torch.stft(wave, n_fft, hop, window=torch.hann_window(n_fft), return_complex=True)
    power = spec.abs() ** 2                                             # [N, F, T]
    mel = torch.einsum("fm,nft->nmt", _mel_bank(sr, n_mels, n_fft), power)
    return torch.log(mel + 1e-6)
