"""A second camera for the same scenes: a shifted rendering domain (lessons 03 and 04).

The mini-CLIP is trained on clean renders. ``new_camera`` shows it the same scenes as a
different camera would: washed out (lower contrast, raised brightness) and grainy
(Gaussian sensor noise), the situation prompt tuning and modality inversion are tested in.

    shifted = new_camera(images, seed=1)    # uint8 or float [N, 3, H, W] -> floats in [0, 1]
"""
from __future__ import annotations

import math

import torch

from ..core import _validate
from .dataset import images_float


def new_camera(images: torch.Tensor, seed: int, contrast: float = 0.45, brightness: float = 0.3,
               noise: float = 0.12) -> torch.Tensor:
    """The same pictures from a new camera: ``contrast * x + brightness + noise * n``, with
    ``n`` standard Gaussian noise drawn from its own generator seeded with ``seed`` (the
    global random state is left alone), clamped to ``[0, 1]``.

    ``images``: ``[N, 3, H, W]``, stored integers 0..255 or floats in ``[0, 1]``. Returns
    floats ``[N, 3, H, W]`` in ``[0, 1]``. The defaults are lessons 03 and 04's camera;
    ``noise=0`` gives the washed-out pictures without grain."""
    _validate.tensor("images", images, 4, floating=False)
    if images.shape[1] != 3:
        raise ValueError(f"images: got shape {tuple(images.shape)}, expected [N, 3, H, W] (RGB)")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed: got {seed!r}, expected a non-negative integer")
    for name, value in (("contrast", contrast), ("brightness", brightness), ("noise", noise)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            raise ValueError(f"{name}: got {value!r}, expected a finite number")
    _validate.non_negative_number("noise", noise)
    g = torch.Generator().manual_seed(seed)
    x = images_float(images)
    grain = torch.randn(x.shape, generator=g).to(x.device)
    return (contrast * x + brightness + noise * grain).clamp(0, 1)
