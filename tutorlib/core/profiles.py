"""What a profile is: every number that makes ``quick`` and ``full`` differ, in one place.

One frozen dataclass per profile (nanoGPT's ``GPTConfig`` is the model). Every default
in the library and every cache key reads it, so changing a number here changes what
is built *and* where it is cached:

    tutorlib.settings().image_size       # 32 in quick, 64 in full
    tutorlib.settings().audio_frames     # derived: log-mel frames of one clip

Lesson-local choices (a step count for one experiment) stay in the notebooks, with
``tutorlib.pick(quick, full)``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    """The shared settings of one profile."""
    name: str
    # the world
    image_size: int                 # pixels per side; object centres sit on the 8-px patch grid
    video_frames: int               # frames per video
    sample_rate: int                # audio samples per second
    duration: float                 # seconds per audio clip
    n_fft: int                      # log-mel window
    hop: int                        # log-mel hop
    train_scenes: int               # load_world("train") default size
    eval_scenes: int                # default size of every other split
    # the course mini-CLIP (lesson 01's recipe, cached for lessons 02-04)
    embed_dim: int
    depth: int
    clip_steps: int
    clip_batch_size: int
    finetune_scenes: int            # scenes whose frozen states pretrained.finetune precomputes
    # lesson 05: unimodal backbones and their world
    backbone_width: int
    backbone_depth: int
    backbone_steps: int
    backbone_batch_size: int
    modality_train_scenes: int
    modality_test_scenes: int
    # lesson 08: the SimCLR image encoder (selfsup), pretrained on images alone
    simclr_width: int
    simclr_steps: int
    simclr_scenes: int
    # the same in both profiles
    patch_size: int = 8             # the towers' patches; object centres sit on their grid
    n_mels: int = 32

    @property
    def audio_samples(self) -> int:
        """Samples in one clip: ``round(sample_rate * duration)``."""
        return int(round(self.sample_rate * self.duration))

    @property
    def audio_frames(self) -> int:
        """Log-mel frames of one clip (``torch.stft`` centred): ``1 + samples // hop``."""
        return 1 + self.audio_samples // self.hop

    def replace(self, **changes) -> "Profile":
        """A copy with some settings changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)


QUICK = Profile(
    name="quick", image_size=32, video_frames=4, sample_rate=8000, duration=0.25, n_fft=256,
    hop=64, train_scenes=20000, eval_scenes=2000, embed_dim=128, depth=2, clip_steps=800,
    clip_batch_size=64, finetune_scenes=8192, backbone_width=64, backbone_depth=1,
    backbone_steps=200, backbone_batch_size=64, modality_train_scenes=3000,
    modality_test_scenes=500, simclr_width=64, simclr_steps=300, simclr_scenes=12000)

FULL = Profile(
    name="full", image_size=64, video_frames=8, sample_rate=16000, duration=0.5, n_fft=512,
    hop=128, train_scenes=100000, eval_scenes=5000, embed_dim=256, depth=4, clip_steps=4000,
    clip_batch_size=128, finetune_scenes=50000, backbone_width=128, backbone_depth=2,
    backbone_steps=2000, backbone_batch_size=256, modality_train_scenes=30000,
    modality_test_scenes=2000, simclr_width=128, simclr_steps=2100, simclr_scenes=120000)

PROFILES: dict[str, Profile] = {"quick": QUICK, "full": FULL}
