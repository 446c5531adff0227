"""Images and videos of scenes, rendered with tensor operations: a smooth grey
background per scene, each object a filled shape of its colour in its grid cell."""
from __future__ import annotations

import torch

from ..core import _validate
from ..core.runtime import settings
from .scenes import Scenes
from .vocabulary import RGB, SHAPES

_MOVE = torch.tensor([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1]], dtype=torch.float32)
_UP: dict = {}


def _centres(position: torch.Tensor, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Grid cell -> centre in pixels, on the patch grid: H/4, H/2, 3H/4."""
    row, col = position // 3, position % 3
    step = image_size / 4
    return (col + 1).float() * step, (row + 1).float() * step


def _shape_mask(shape: int, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """Mask of one shape for unit-radius pixel offsets ``dx, dy`` (``[K, H, W]``)."""
    ax, ay = dx.abs(), dy.abs()
    if shape == 0:                                                  # circle
        return dx * dx + dy * dy <= 1.0
    if shape == 1:                                                  # square
        return torch.maximum(ax, ay) <= 0.8
    if shape == 2:                                                  # triangle, apex up
        return (dy <= 0.7) & (ax <= 0.55 * (dy + 1.0))
    if shape == 3:                                                  # diamond
        return ax + ay <= 1.0
    if shape == 4:                                                  # cross
        return ((ax <= 0.33) & (ay <= 1.0)) | ((ay <= 0.33) & (ax <= 1.0))
    # star: radius 0.45 + 0.55 * ((1 - sin 5phi) / 2)^2, with sin 5phi = Im(z^5) / |z|^5
    rho2 = dx * dx + dy * dy
    x2, y2 = dx * dx, dy * dy
    im5 = dy * (5 * x2 * x2 - 10 * x2 * y2 + y2 * y2)
    sin5 = im5 / rho2.clamp_min(1e-12) ** 2.5
    r = 0.45 + 0.55 * (0.5 - 0.5 * sin5) ** 2
    return rho2 <= r * r


def _uniform(seeds: torch.Tensor, k: int) -> torch.Tensor:
    """``k`` pseudo-random numbers in [0, 1) per seed, ``[N, k]``: a counter-based
    integer hash, so a scene looks the same whatever batch it is rendered in."""
    x = seeds.long()[:, None] * 2654435761 + torch.arange(k)[None, :] * 40503 + 12345
    for _ in range(3):
        x = (x ^ (x >> 16)) * 0x45D9F3B % (1 << 32)
    return (x % (1 << 24)).float() / (1 << 24)


def _upsampler(size: int) -> torch.Tensor:
    if size not in _UP:
        eye = torch.eye(4)[:, None, :, None]                                # [4, 1, 4, 1]
        _UP[size] = torch.nn.functional.interpolate(
            eye.expand(4, 1, 4, 1), size=(size, 1), mode="bilinear",
            align_corners=False)[:, 0, :, 0].T
    return _UP[size]


def _background(seeds: torch.Tensor, image_size: int, out: torch.Tensor) -> torch.Tensor:
    """Write a smooth grey texture per scene into ``out`` ``[N, 3, H, W]``; return the
    colour jitter ``[N, 2, 3]`` of the object slots. Both come from the scene seeds."""
    n = len(seeds)
    u = _uniform(seeds, 16 + 3 + 6)
    up = _upsampler(image_size)                                          # bilinear 4 -> H
    tex = torch.einsum("hi,nij,wj->nhw", up, u[:, :16].view(n, 4, 4), up)[:, None]
    torch.add(0.12 * tex, 0.32 + 0.03 * u[:, 16:19].view(n, 3, 1, 1), out=out)
    return 0.05 * (u[:, 19:].view(n, 2, 3) - 0.5)


def render_images(scenes: Scenes, image_size: int | None = None, *, frame: float = 0.0,
                  chunk: int = 256) -> torch.Tensor:
    """Render scenes as RGB images ``[N, 3, H, W]`` in ``[0, 1]`` with tensor operations.

    ``frame`` moves every object by its motion (``H/16`` pixels per frame): video
    frames are images at ``frame = 0, 1, 2, ...``. ``image_size`` defaults to the
    profile's (``tutorlib.settings().image_size``).
    """
    if not isinstance(scenes, Scenes):
        raise ValueError(f"scenes: got {type(scenes).__name__}, expected a world.Scenes")
    size = (settings().image_size if image_size is None
            else _validate.positive_int("image_size", image_size))
    if size < 8:
        raise ValueError(f"image_size: got {size}, expected at least 8 pixels")
    out = torch.empty(len(scenes), 3, size, size)
    for lo in range(0, len(scenes), chunk):     # chunks small enough to stay in cache
        _render_chunk(scenes[lo:lo + chunk], size, float(frame), out[lo:lo + chunk])
    return out


def _slot_masks(sc: Scenes, size: int, frame: float) -> list[torch.Tensor]:
    """The pixels ``[N, H, W]`` bool of object 0 and of object 1 (all False where absent),
    each drawn whole, before object 1 is painted over object 0."""
    coords = torch.arange(size, dtype=torch.float32) + 0.5
    radius = torch.tensor([0.15, 0.24]) * size
    out = []
    for slot in (0, 1):
        mask = torch.zeros(len(sc), size, size, dtype=torch.bool)
        out.append(mask)
        if not bool((sc.shape[:, slot] >= 0).any()):
            continue
        cx, cy = _centres(sc.position[:, slot].clamp_min(0), size)
        move = _MOVE[sc.motion[:, slot].clamp_min(0)] * (frame * size / 16)
        cx, cy = (cx + move[:, 0]).clamp(0, size), (cy + move[:, 1]).clamp(0, size)
        r = radius[sc.size[:, slot].clamp_min(0)]
        for shape in range(len(SHAPES)):            # one mask formula per group of objects
            idx = torch.nonzero(sc.shape[:, slot] == shape).squeeze(1)
            if len(idx) == 0:
                continue
            dx = (coords[None, None, :] - cx[idx, None, None]) / r[idx, None, None]
            dy = (coords[None, :, None] - cy[idx, None, None]) / r[idx, None, None]
            mask[idx] = _shape_mask(shape, dx, dy)
    return out


def _render_chunk(sc: Scenes, size: int, frame: float, img: torch.Tensor) -> None:
    jitter = _background(sc.seed, size, img)
    for slot, mask in enumerate(_slot_masks(sc, size, frame)):
        colour = (RGB[sc.colour[:, slot].clamp_min(0)] + jitter[:, slot]).clamp(0, 1)
        torch.where(mask[:, None], colour[:, :, None, None], img, out=img)


def object_masks(scenes: Scenes, image_size: int | None = None, *,
                 frame: float = 0.0) -> torch.Tensor:
    """Where each object is visible in ``render_images(scenes, image_size, frame=frame)``:
    ``[N, 2, H, W]`` bool, object 0 and object 1 (all False for a missing object 1). Object 1
    is painted last, so where the two overlap the pixel belongs to object 1 only: the masks
    never share a pixel. The ground truth of lesson 07's word-to-patch grounding."""
    if not isinstance(scenes, Scenes):
        raise ValueError(f"scenes: got {type(scenes).__name__}, expected a world.Scenes")
    size = (settings().image_size if image_size is None
            else _validate.positive_int("image_size", image_size))
    if size < 8:
        raise ValueError(f"image_size: got {size}, expected at least 8 pixels")
    m0, m1 = _slot_masks(scenes, size, float(frame))
    return torch.stack([m0 & ~m1, m1], 1)


def render_video(scenes: Scenes, image_size: int | None = None,
                 frames: int | None = None) -> torch.Tensor:
    """Each object moves by its motion: ``[N, T, 3, H, W]``; ``frames`` (T) defaults to
    the profile's ``video_frames`` (4 quick, 8 full)."""
    t = settings().video_frames if frames is None else _validate.positive_int("frames", frames)
    return torch.stack([render_images(scenes, image_size, frame=f * 4 / t) for f in range(t)], 1)
