"""tutorlib.world.audio (sound: pitch from colour, loudness from size, the log-mel features)."""
import pytest
import torch

from tutorlib.core import profiles
from tutorlib import world
from tutorlib.world import COLOURS, SHAPES


def test_pitch_follows_colour_full_profile(monkeypatch):
    monkeypatch.setenv("TUTORLIB_PROFILE", "full")
    for ci, colour in enumerate(COLOURS):
        wave = world.render_audio(world.make_scenes("circle", colour, "small", "bottom"))[0]
        assert wave.shape == (8000,)                     # full: 0.5 s at 16 kHz
        spec = torch.fft.rfft(wave.double(), n=1 << 18).abs()
        f = spec.argmax().item() * 16000 / (1 << 18)
        assert abs(f - world.PITCH_HZ[ci].item()) < 3.0, (colour, f)


@pytest.mark.parametrize("position", ["top left", "center", "bottom right"])
def test_pitch_follows_colour(position):
    sr = 8000
    for ci, colour in enumerate(COLOURS):
        wave = world.render_audio(world.make_scenes("circle", colour, "large", position))[0]
        assert wave.shape == (2000,)                     # quick: 0.25 s at 8 kHz
        n_fft = 1 << 17                                   # zero-padded: fine frequency grid
        spec = torch.fft.rfft(wave.double(), n=n_fft).abs()
        f = spec.argmax().item() * sr / n_fft
        assert abs(f - world.PITCH_HZ[ci].item()) < 3.0, (colour, f)


def test_louder_when_larger():
    for shape in SHAPES:
        for colour in ("red", "yellow"):
            rms = [world.render_audio(world.make_scenes(shape, colour, size))[0].pow(2).mean().sqrt()
                   for size in ("small", "large")]
            assert rms[1] > 1.5 * rms[0] > 0


def test_audio_is_bounded_and_silent_nowhere_else():
    sc = world.sample_scenes(20, seed=2)
    wave = world.render_audio(sc)
    assert wave.shape == (20, 2000)
    assert torch.isfinite(wave).all()
    assert wave.abs().max() <= 2.0
    assert (wave.abs().amax(1) > 0.01).all()


def test_log_mel_shape_and_finite():
    wave = world.render_audio(world.sample_scenes(6, seed=0))
    mel = world.log_mel(wave)
    assert mel.shape[:2] == (6, 32) and mel.ndim == 3
    assert mel.shape[2] == 1 + 2000 // 64
    assert torch.isfinite(mel).all()
    assert world.log_mel(wave, n_mels=16).shape[1] == 16


def test_log_mel_peak_band_follows_pitch():
    waves = torch.cat([world.render_audio(world.make_scenes("circle", c, "large", "top left"))
                       for c in COLOURS])
    mel = world.log_mel(waves)
    peak_band = mel.mean(2).argmax(1)
    assert (peak_band[1:] >= peak_band[:-1]).all()       # higher pitch, higher band
    assert peak_band[-1] > peak_band[0]


def test_the_derived_audio_frame_count_is_what_log_mel_makes(monkeypatch):
    """``settings().audio_frames`` is computed, not typed: it must match the spectrogram
    that the audio tower reads, in both profiles."""
    from tutorlib.core import profiles
    from tutorlib import settings
    for name in ("quick", "full"):
        monkeypatch.setenv("TUTORLIB_PROFILE", name)
        wave = world.render_audio(world.sample_scenes(2, seed=0))
        assert world.log_mel(wave).shape[1:] == (settings().n_mels, settings().audio_frames)
        assert settings() is profiles.PROFILES[name]
