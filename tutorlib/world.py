"""A procedural world of shapes, seen as image, text, audio and video.

A *scene* holds one or two objects. Each object has a shape, a colour, a size, a
position on a 3x3 grid and a motion. Everything is generated from a seed, so it is
offline, fast, deterministic and has known ground truth.

    scenes = sample_scenes(8, seed=0)          # Scenes: integer attribute tensors
    render_images(scenes)                       # [8, 3, H, W] floats in [0, 1]
    captions(scenes)                            # 8 strings from a small grammar
    render_audio(scenes); log_mel(wave)         # [8, L] waveform, [8, M, T] features
    render_video(scenes)                        # [8, T, 3, H, W]
    load_world("train", n=..., modalities=...)  # a cached datasets.Dataset
"""
from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, fields

import numpy as np
import torch

from . import _validate
from ._core import get_seed, pick

# --------------------------------------------------------------------------- vocabulary
SHAPES = ("circle", "square", "triangle", "diamond", "cross", "star")
COLOURS = ("red", "green", "blue", "yellow", "purple", "orange")
SIZES = ("small", "large")
POSITIONS = ("top left", "top", "top right", "left", "center", "right",
             "bottom left", "bottom", "bottom right")
MOTIONS = ("still", "left", "right", "up", "down")
ATTRIBUTES = {"shape": SHAPES, "colour": COLOURS, "size": SIZES, "position": POSITIONS,
              "motion": MOTIONS}

RGB = torch.tensor([[0.90, 0.10, 0.10], [0.10, 0.75, 0.15], [0.15, 0.30, 0.95],
                    [0.95, 0.90, 0.10], [0.60, 0.15, 0.80], [1.00, 0.55, 0.05]])

# Words used in training captions, and words kept for the paraphrase split only.
# Held-out words were chosen as what a person would say, before any model was trained.
SYNONYMS = {
    "circle": (["circle", "disc"], ["dot"]),
    "square": (["square", "block"], ["box"]),
    "triangle": (["triangle", "wedge"], ["pyramid"]),
    "diamond": (["diamond", "lozenge"], ["rhombus"]),
    "cross": (["cross", "plus"], ["x"]),
    "star": (["star", "asterisk"], ["pentagram"]),
    "red": (["red", "crimson"], ["scarlet"]),
    "green": (["green", "lime"], ["emerald"]),
    "blue": (["blue", "navy"], ["azure"]),
    "yellow": (["yellow", "golden"], ["lemon"]),
    "purple": (["purple", "violet"], ["lavender"]),
    "orange": (["orange", "amber"], ["tangerine"]),
    "small": (["small", "tiny"], ["little"]),
    "large": (["large", "big"], ["huge"]),
    "top": (["top"], ["upper"]),
    "bottom": (["bottom"], ["lower"]),
    "center": (["center", "middle"], ["centre"]),
    "left": (["left"], ["left"]),
    "right": (["right"], ["right"]),
}
TEMPLATES = (["a {obj} in the {pos}", "{pos}: {obj}", "there is a {obj} at the {pos}",
              "a photo of a {obj} in the {pos}"],
             ["you can see a {obj} near the {pos}", "picture showing one {obj}, {pos} side"])
RELATIONS = ("and", "left of", "right of", "above", "below")
NOUNS = (["object", "thing", "shape"], ["item"])

# Partial captions name only some attributes of one object (so "a red object" is in distribution).
PARTIALS = (("colour",), ("shape",), ("size", "shape"), ("colour", "shape"),
            ("size", "colour", "shape"), ("position",), ("shape", "position"),
            ("colour", "position"), ("size", "colour", "shape", "position"))

# Shape-colour pairs never shown in train/val/test: the novel-compositions split.
NOVEL_PAIRS = tuple((s, (s + 2) % len(COLOURS)) for s in range(len(SHAPES)))
# Base/novel classes for prompt tuning: novel classes have shapes never seen in training.
BASE_SHAPES = (0, 1, 2)
NOVEL_SHAPES = (3, 4, 5)

SPLITS = ("train", "val", "test", "compositions", "base", "novel", "paraphrase")
MODALITIES = ("image", "text", "audio", "video")
_SPLIT_SEED = {name: 1000 * (i + 1) for i, name in enumerate(SPLITS)}


# --------------------------------------------------------------------------- scenes
@dataclass
class Scenes:
    """A batch of N scenes as integer tensors of shape ``[N, 2]`` (object 0, object 1).

    Object 1 is ``-1`` in every field for one-object scenes. ``seed`` ``[N]`` drives the
    per-scene rendering noise (background texture, colour jitter).
    """
    shape: torch.Tensor
    colour: torch.Tensor
    size: torch.Tensor
    position: torch.Tensor
    motion: torch.Tensor
    seed: torch.Tensor

    def __len__(self) -> int:
        return self.shape.shape[0]

    @property
    def n_objects(self) -> torch.Tensor:
        return 1 + (self.shape[:, 1] >= 0).long()

    def __getitem__(self, idx) -> "Scenes":
        if isinstance(idx, int):
            if not -len(self) <= idx < len(self):
                raise IndexError(f"idx: got {idx}, expected -{len(self)}..{len(self) - 1}")
            idx = slice(idx % len(self), idx % len(self) + 1)
        return Scenes(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def describe(self, i: int = 0) -> str:
        """A plain-English description of scene ``i`` (the canonical caption)."""
        return captions(self[i], style="canonical")[0][0]


def make_scenes(shape, colour, size="large", position="center", motion="still",
                seed: int = 0) -> Scenes:
    """One one-object scene from attribute names or indices, e.g.
    ``make_scenes("star", "red", "small", "top left")``."""
    vals = {}
    for name, value in (("shape", shape), ("colour", colour), ("size", size),
                        ("position", position), ("motion", motion)):
        options = ATTRIBUTES[name]
        if isinstance(value, str):
            _validate.one_of(name, value, options)
            value = options.index(value)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < len(options):
            raise ValueError(f"{name}: got {value!r}, expected a name in {options} "
                             f"or an index 0..{len(options) - 1}")
        vals[name] = torch.tensor([[value, -1]])
    return Scenes(**vals, seed=torch.tensor([get_seed(seed)]))


def sample_scenes(n: int, seed: int = 0, *, two_object_frac: float = 0.3,
                  shapes=None, exclude_pairs=NOVEL_PAIRS, only_pairs=None) -> Scenes:
    """Draw ``n`` random scenes.

    ``shapes`` restricts the shape indices; ``exclude_pairs`` lists (shape, colour)
    pairs no object may have; ``only_pairs`` forces object 0 to one of these pairs.
    Two-object scenes put their objects in different grid cells.
    """
    _validate.positive_int("n", n)
    seed = get_seed(seed)
    if not 0.0 <= float(two_object_frac) <= 1.0:
        raise ValueError(f"two_object_frac: got {two_object_frac!r}, expected a number in [0, 1]")
    g = torch.Generator().manual_seed(seed)
    allowed_shapes = torch.arange(len(SHAPES)) if shapes is None else torch.tensor(list(shapes))
    if len(allowed_shapes) == 0 or bool(((allowed_shapes < 0) | (allowed_shapes >= len(SHAPES))).any()):
        raise ValueError(f"shapes: got {shapes!r}, expected indices in 0..{len(SHAPES) - 1}")
    banned = torch.zeros(len(SHAPES), len(COLOURS), dtype=torch.bool)
    for s, c in exclude_pairs or ():
        banned[s, c] = True

    def draw(k: int, slot: int):
        shape = allowed_shapes[torch.randint(len(allowed_shapes), (k,), generator=g)]
        colour = torch.randint(len(COLOURS), (k,), generator=g)
        if only_pairs is not None and slot == 0:
            pairs = torch.tensor(list(only_pairs))
            pick_ = pairs[torch.randint(len(pairs), (k,), generator=g)]
            shape, colour = pick_[:, 0], pick_[:, 1]
        for _ in range(100):  # resample banned pairs (vectorised rejection)
            bad = banned[shape, colour]
            if not bool(bad.any()):
                break
            colour[bad] = torch.randint(len(COLOURS), (int(bad.sum()),), generator=g)
        else:
            raise ValueError("exclude_pairs: every allowed shape-colour pair is excluded")
        size = torch.randint(len(SIZES), (k,), generator=g)
        motion = torch.randint(len(MOTIONS), (k,), generator=g)
        return shape, colour, size, motion

    s0, c0, z0, m0 = draw(n, 0)
    p0 = torch.randint(len(POSITIONS), (n,), generator=g)
    two = torch.rand(n, generator=g) < two_object_frac
    s1, c1, z1, m1 = draw(n, 1)
    p1 = (p0 + torch.randint(1, len(POSITIONS), (n,), generator=g)) % len(POSITIONS)
    none = torch.full((n,), -1)
    cols = [torch.stack([a, torch.where(two, b, none)], 1)
            for a, b in ((s0, s1), (c0, c1), (z0, z1), (p0, p1), (m0, m1))]
    scene_seed = torch.randint(0, 2**31 - 1, (n,), generator=g)
    return Scenes(*cols, seed=scene_seed)


# --------------------------------------------------------------------------- images
def _centres(position: torch.Tensor, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Grid cell -> centre in pixels, on the patch grid: H/4, H/2, 3H/4."""
    row, col = position // 3, position % 3
    step = image_size / 4
    return (col + 1).float() * step, (row + 1).float() * step


_MOVE = torch.tensor([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1]], dtype=torch.float32)


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


_UP: dict = {}


def _upsampler(size: int) -> torch.Tensor:
    if size not in _UP:
        eye = torch.eye(4)[:, None, :, None]                                # [4, 1, 4, 1]
        _UP[size] = torch.nn.functional.interpolate(
            eye.expand(4, 1, 4, 1), size=(size, 1), mode="bilinear", align_corners=False)[:, 0, :, 0].T
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
    frames are images at ``frame = 0, 1, 2, ...``.
    """
    if not isinstance(scenes, Scenes):
        raise ValueError(f"scenes: got {type(scenes).__name__}, expected a world.Scenes")
    size = pick(32, 64) if image_size is None else _validate.positive_int("image_size", image_size)
    if size < 8:
        raise ValueError(f"image_size: got {size}, expected at least 8 pixels")
    out = torch.empty(len(scenes), 3, size, size)
    for lo in range(0, len(scenes), chunk):     # chunks small enough to stay in cache
        _render_chunk(scenes[lo:lo + chunk], size, float(frame), out[lo:lo + chunk])
    return out


def _render_chunk(sc: Scenes, size: int, frame: float, img: torch.Tensor) -> None:
    jitter = _background(sc.seed, size, img)
    coords = torch.arange(size, dtype=torch.float32) + 0.5
    radius = torch.tensor([0.15, 0.24]) * size
    for slot in (0, 1):
        present = sc.shape[:, slot] >= 0
        if not bool(present.any()):
            continue
        cx, cy = _centres(sc.position[:, slot].clamp_min(0), size)
        move = _MOVE[sc.motion[:, slot].clamp_min(0)] * (frame * size / 16)
        cx, cy = (cx + move[:, 0]).clamp(0, size), (cy + move[:, 1]).clamp(0, size)
        r = radius[sc.size[:, slot].clamp_min(0)]
        mask = torch.zeros(len(sc), size, size, dtype=torch.bool)
        for shape in range(len(SHAPES)):            # one mask formula per group of objects
            idx = torch.nonzero(sc.shape[:, slot] == shape).squeeze(1)
            if len(idx) == 0:
                continue
            dx = (coords[None, None, :] - cx[idx, None, None]) / r[idx, None, None]
            dy = (coords[None, :, None] - cy[idx, None, None]) / r[idx, None, None]
            mask[idx] = _shape_mask(shape, dx, dy)
        colour = (RGB[sc.colour[:, slot].clamp_min(0)] + jitter[:, slot]).clamp(0, 1)
        torch.where(mask[:, None], colour[:, :, None, None], img, out=img)


def render_video(scenes: Scenes, image_size: int | None = None,
                 frames: int | None = None) -> torch.Tensor:
    """Each object moves by its motion: ``[N, T, 3, H, W]`` (T = 4 quick, 8 full)."""
    t = pick(4, 8) if frames is None else _validate.positive_int("frames", frames)
    return torch.stack([render_images(scenes, image_size, frame=f * 4 / t) for f in range(t)], 1)


# --------------------------------------------------------------------------- audio
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


def _audio_curves(sr: int, n_samples: int, dur: float):
    """Per (motion, column, row): the cumulative pitch glide ``[5, 3, L]`` and the
    amplitude envelope ``[5, 3, 3, L]`` (onset, swell or decay, tremolo, fades)."""
    t = torch.arange(n_samples, dtype=torch.float32) / sr
    col = torch.arange(3, dtype=torch.float32)[:, None]
    local = (t[None] - col * dur / 4) / (dur / 2)                       # [3, L]: 0..1 over the tone
    on = ((local >= 0) & (local < 1)).float()
    lc = local.clamp(0, 1)
    glide = torch.stack([torch.ones_like(lc), torch.ones_like(lc), torch.ones_like(lc),
                         1 + 0.25 * lc, 1 - 0.2 * lc])                   # still, left, right, up, down
    cum_glide = torch.cumsum(glide, -1) / sr                             # seconds, bent by the glide
    swell = torch.stack([torch.ones_like(lc), 1 - 0.8 * lc, 0.2 + 0.8 * lc,
                         torch.ones_like(lc), torch.ones_like(lc)])      # [5, 3, L]
    trem = 1 - 0.5 * (TREMOLO_HZ[:, None] > 0) * (0.5 + 0.5 * torch.cos(2 * torch.pi * TREMOLO_HZ[:, None] * t))
    fade = (local * 20).clamp(0, 1) * ((1 - local) * 20).clamp(0, 1) * on  # [3, L]
    env = swell[:, :, None, :] * trem[None, None] * fade[None, :, None, :]
    return cum_glide, env


def render_audio(scenes: Scenes, sample_rate: int | None = None,
                 duration: float | None = None) -> torch.Tensor:
    """Synthesise a mono waveform ``[N, L]`` per scene, each object a tone:
    pitch from colour, timbre (harmonics) from shape, loudness from size,
    onset from grid column, tremolo rate from grid row, a glide (up/down) or a
    swell/decay (right/left) from motion. Two-object scenes sum both tones."""
    if not isinstance(scenes, Scenes):
        raise ValueError(f"scenes: got {type(scenes).__name__}, expected a world.Scenes")
    sr = pick(8000, 16000) if sample_rate is None else _validate.positive_int("sample_rate", sample_rate)
    dur = pick(0.25, 0.5) if duration is None else _validate.positive_number("duration", duration)
    n_samples = int(round(sr * dur))
    cum_glide, env = _audio_curves(sr, n_samples, dur)
    wave = torch.zeros(len(scenes), n_samples)
    for slot in (0, 1):
        idx = torch.nonzero(scenes.shape[:, slot] >= 0).squeeze(1)
        if len(idx) == 0:
            continue
        pos, mot = scenes.position[idx, slot], scenes.motion[idx, slot]
        phase = (2 * torch.pi * PITCH_HZ[scenes.colour[idx, slot]])[:, None] * cum_glide[mot, pos % 3]
        harm = TIMBRE[scenes.shape[idx, slot]]
        harm = harm / harm.sum(1, keepdim=True)
        # sum_k a_k sin(k phase), by the recurrence sin((k+1)x) = 2 cos(x) sin(kx) - sin((k-1)x)
        s_prev, s_k, two_cos = torch.zeros_like(phase), torch.sin(phase), 2 * torch.cos(phase)
        tone = harm[:, :1] * s_k
        for k in range(1, harm.shape[1]):
            s_prev, s_k = s_k, two_cos * s_k - s_prev
            tone += harm[:, k:k + 1] * s_k
        gain = LOUDNESS[scenes.size[idx, slot]][:, None]
        wave[idx] += gain * tone * env[mot, pos % 3, pos // 3]
    return wave


_MEL_CACHE: dict = {}


def log_mel(wave: torch.Tensor, sample_rate: int | None = None, n_mels: int | None = None,
            n_fft: int | None = None, hop: int | None = None) -> torch.Tensor:
    """Log-mel spectrogram features ``[N, n_mels, frames]`` of waveforms ``[N, L]``.

    The mel filter bank comes from ``transformers.audio_utils.mel_filter_bank``.
    """
    _validate.tensor("wave", wave, 2)
    sr = pick(8000, 16000) if sample_rate is None else _validate.positive_int("sample_rate", sample_rate)
    n_mels = 32 if n_mels is None else _validate.positive_int("n_mels", n_mels)
    n_fft = pick(256, 512) if n_fft is None else _validate.positive_int("n_fft", n_fft)
    hop = pick(64, 128) if hop is None else _validate.positive_int("hop", hop)
    k = (sr, n_mels, n_fft)
    if k not in _MEL_CACHE:
        from transformers.audio_utils import mel_filter_bank
        fb = mel_filter_bank(num_frequency_bins=n_fft // 2 + 1, num_mel_filters=n_mels,
                             min_frequency=50.0, max_frequency=sr / 2, sampling_rate=sr,
                             norm="slaney", mel_scale="slaney")
        _MEL_CACHE[k] = torch.tensor(fb, dtype=torch.float32)           # [F, M]
    spec = torch.stft(wave, n_fft, hop, window=torch.hann_window(n_fft), return_complex=True)
    power = spec.abs() ** 2                                             # [N, F, T]
    mel = torch.einsum("fm,nft->nmt", _MEL_CACHE[k], power)
    return torch.log(mel + 1e-6)


# --------------------------------------------------------------------------- text
def _word(name: str, rng: random.Random | None, held_out: bool) -> str:
    train, test = SYNONYMS[name]
    if rng is None:                       # canonical: the first, plainest word
        return train[0]
    return rng.choice(test if held_out else train)


def _position_words(p: int, rng: random.Random, held_out: bool) -> str:
    parts = POSITIONS[p].split()
    return " ".join(_word(w, rng, held_out) for w in parts)


_OBJ_FIELDS = ("shape", "colour", "size", "position")


def _object_phrase(obj: tuple, names, rng, held_out) -> str:
    """``obj`` = (shape, colour, size, position) indices; name the attributes in ``names``."""
    words = []
    if "size" in names:
        words.append(_word(SIZES[obj[2]], rng, held_out))
    if "colour" in names:
        words.append(_word(COLOURS[obj[1]], rng, held_out))
    words.append(_word(SHAPES[obj[0]], rng, held_out) if "shape" in names
                 else rng.choice(NOUNS[1] if held_out else NOUNS[0]))
    return " ".join(words)


def _relation(p0: int, p1: int) -> int:
    if p0 % 3 != p1 % 3:
        return 1 if p0 % 3 < p1 % 3 else 2          # left of / right of
    return 3 if p0 // 3 < p1 // 3 else 4            # above / below


_ARTICLE = re.compile(r"\ba (?=[aeiou])")
SPEC_WIDTH = 9   # [shape, colour, size, position] for object A and B, then the relation
_FLIP = {1: 2, 2: 1, 3: 4, 4: 3}


def _caption(objs, style: str, rng: random.Random, held_out: bool) -> tuple[str, list[int]]:
    """One caption and its spec for a scene given as a list of object tuples."""
    spec = [-1] * 8 + [0]
    words_rng = None if style == "canonical" else rng
    if style == "partial":
        names = rng.choice(PARTIALS)
        obj = objs[rng.randrange(len(objs))]
        text = f"a {_object_phrase(obj, names, rng, held_out)}"
        if "position" in names:
            text += f" in the {_position_words(obj[3], rng, held_out)}"
        spec[:4] = [v if f in names else -1 for f, v in zip(_OBJ_FIELDS, obj)]
    elif len(objs) == 2:
        canonical = style == "canonical"
        held = held_out and not canonical
        rel = _relation(objs[0][3], objs[1][3]) if canonical or rng.random() < 0.7 else 0
        a, b = objs
        if not canonical and rel and rng.random() < 0.5:    # say it from B's side
            a, b, rel = b, a, _FLIP[rel]
        pa = _object_phrase(a, _OBJ_FIELDS[:3], words_rng, held)
        pb = _object_phrase(b, _OBJ_FIELDS[:3], words_rng, held)
        text = f"a {pa} {RELATIONS[rel]} a {pb}"
        spec = list(a[:3]) + [-1] + list(b[:3]) + [-1, rel]
    else:
        held = held_out and style != "canonical"
        obj = objs[0]
        template = TEMPLATES[0][0] if style == "canonical" else rng.choice(TEMPLATES[1 if held else 0])
        pos = _position_words(obj[3], words_rng, held)
        if template.startswith("{pos}:"):
            pos = pos.replace(" ", "-")
        text = template.format(obj=_object_phrase(obj, _OBJ_FIELDS[:3], words_rng, held), pos=pos)
        spec[:4] = list(obj)
    return _ARTICLE.sub("an ", text), spec


def captions(scenes: Scenes, seed: int = 0, *, style: str = "full",
             held_out: bool = False) -> tuple[list[str], torch.Tensor]:
    """Captions for ``scenes`` and what each one asserts.

    ``style``: ``"full"`` names every attribute (two-object scenes get a relational
    caption such as "a red circle left of a blue square"); ``"partial"`` names only some
    attributes of one object ("a red object"); ``"canonical"`` is the plain full caption.
    ``held_out=True`` uses the paraphrase split's synonyms and templates.

    Returns the strings and their *specs* ``[N, 9]``: the (shape, colour, size,
    position) each caption requires of object A and object B (-1: not named), and the
    relation index into ``RELATIONS`` (0: none). ``matches`` turns specs into targets.
    """
    if not isinstance(scenes, Scenes):
        raise ValueError(f"scenes: got {type(scenes).__name__}, expected a world.Scenes")
    _validate.one_of("style", style, ("full", "partial", "canonical"))
    rng = random.Random(get_seed(seed))
    attrs = scene_attributes(scenes).tolist()                   # [N][2][4] plain ints
    texts, specs = [], []
    for scene in attrs:
        objs = [tuple(o) for o in scene if o[0] >= 0]
        text, spec = _caption(objs, style, rng, held_out)
        texts.append(text)
        specs.append(spec)
    return texts, torch.tensor(specs, dtype=torch.long).view(-1, SPEC_WIDTH)


def swap_captions(scenes: Scenes, seed: int = 0, attribute: str = "colour",
                  held_out: bool = False) -> tuple[list[str], list[str], torch.Tensor]:
    """Binding test pairs: each two-object scene's full caption, and the same caption
    (same words, template and relation) with ``attribute`` swapped *between* the two
    objects: "a red circle and a blue square" vs "a blue circle and a red square".

    Returns (true captions, swapped captions, ``valid`` ``[N]`` bool): ``valid`` marks
    two-object scenes whose swapped caption is *false* of the scene. Others cannot be
    negatives: one object, equal values, or a swap that says the same thing ("a red
    star and a blue star" -> "a blue star and a red star")."""
    _validate.one_of("attribute", attribute, ("shape", "colour", "size"))
    swapped = Scenes(**{f.name: getattr(scenes, f.name).clone() for f in fields(scenes)})
    col = getattr(swapped, attribute)
    col[:] = col.flip(1).where(scenes.shape[:, 1:2] >= 0, col)
    true_texts, _ = captions(scenes, seed, held_out=held_out)
    swap_texts, swap_specs = captions(swapped, seed, held_out=held_out)   # same seed: same words
    values = getattr(scenes, attribute)
    attrs = scene_attributes(scenes)
    still_true = torch.cat([matches(attrs[lo:lo + 512], swap_specs[lo:lo + 512]).diagonal()
                            for lo in range(0, len(attrs), 512)]) if len(attrs) else torch.zeros(0, dtype=torch.bool)
    valid = (scenes.shape[:, 1] >= 0) & (values[:, 0] != values[:, 1]) & ~still_true
    return true_texts, swap_texts, valid


def scene_attributes(scenes: Scenes) -> torch.Tensor:
    """``[N, 2, 4]``: (shape, colour, size, position) of each object (-1 if absent)."""
    return torch.stack([scenes.shape, scenes.colour, scenes.size, scenes.position], -1)


def matches(attrs: torch.Tensor, specs: torch.Tensor) -> torch.Tensor:
    """Which scene satisfies which caption: ``[N, 2, 4]`` attributes and ``[M, 9]`` specs
    -> ``[N, M]`` bool. A caption holds if some object meets A's requirements, another
    (if B is named) meets B's, and the named relation holds between them."""
    _validate.tensor("attrs", attrs, 3, floating=False)
    _validate.tensor("specs", specs, 2, floating=False)
    if attrs.shape[1:] != (2, 4) or specs.shape[1] != SPEC_WIDTH:
        raise ValueError(f"attrs, specs: got shapes {tuple(attrs.shape)} and {tuple(specs.shape)}, "
                         f"expected [N, 2, 4] and [M, {SPEC_WIDTH}]")
    present = attrs[:, :, 0] >= 0                                            # [N, 2]

    def meets(req):                                                          # req [M, 4]
        ok = (req[None, None] < 0) | (attrs[:, :, None] == req[None, None])  # [N, 2, M, 4]
        return ok.all(-1) & present[:, :, None]                              # [N, 2, M]

    a, b = meets(specs[:, :4]), meets(specs[:, 4:8])
    has_b = specs[:, 4:8].ge(0).any(1)                                       # [M]
    pos = attrs[:, :, 3]
    col, row = pos % 3, pos // 3
    rel = specs[:, 8]
    rel_ok = torch.stack([                                                   # object 0 as A, 1 as B
        torch.ones_like(col[:, 0], dtype=torch.bool), col[:, 0] < col[:, 1], col[:, 0] > col[:, 1],
        row[:, 0] < row[:, 1], row[:, 0] > row[:, 1]], 1)                    # [N, 5]
    rel_swapped = torch.stack([
        torch.ones_like(col[:, 0], dtype=torch.bool), col[:, 1] < col[:, 0], col[:, 1] > col[:, 0],
        row[:, 1] < row[:, 0], row[:, 1] > row[:, 0]], 1)
    pair01 = a[:, 0] & b[:, 1] & rel_ok[:, rel]
    pair10 = a[:, 1] & b[:, 0] & rel_swapped[:, rel]
    single = a.any(1)
    return torch.where(has_b[None], pair01 | pair10, single)


def prompts(attribute: str, held_out: bool = False) -> list[str]:
    """One zero-shot prompt per class of ``attribute``, in the partial-caption form the
    models were trained on ("a red object", "a star", "an object in the top left").
    ``held_out=True`` words them with the paraphrase split's synonyms ("a scarlet item")."""
    _validate.one_of("attribute", attribute, ("shape", "colour", "size", "position"))
    noun = NOUNS[1][0] if held_out else NOUNS[0][0]
    pick_ = (lambda w: SYNONYMS[w][1][0]) if held_out else (lambda w: SYNONYMS[w][0][0])
    if attribute == "shape":
        out = [f"a {pick_(s)}" for s in SHAPES]
    elif attribute == "position":
        out = [f"a {noun} in the " + " ".join(pick_(w) for w in p.split()) for p in POSITIONS]
    else:
        out = [f"a {pick_(v)} {noun}" for v in ATTRIBUTES[attribute]]
    return [_ARTICLE.sub("an ", p) for p in out]


# --------------------------------------------------------------------------- tokenizer
_TOKEN = re.compile(r"[a-z]+")
SPECIALS = ("<pad>", "<unk>", "<bos>", "<eos>")


def _training_words() -> list[str]:
    words = set()
    for train, _ in SYNONYMS.values():
        for w in train:
            words.update(_TOKEN.findall(w))
    for t in TEMPLATES[0]:
        words.update(_TOKEN.findall(t.replace("{obj}", "").replace("{pos}", "")))
    for r in RELATIONS:
        words.update(_TOKEN.findall(r))
    words.update(NOUNS[0])
    words.update(["a", "an", "the", "of", "in", "at", "photo"])
    return sorted(words)


class Tokenizer:
    """Word-level tokenizer over the *training* vocabulary: held-out paraphrase words
    become ``<unk>``, as they would for a model that never saw them.

    ``tok(["a red circle"])`` -> ids ``[N, context_length]`` (``<bos> ... <eos> <pad>...``).
    """

    def __init__(self, context_length: int = 40):
        self.context_length = _validate.positive_int("context_length", context_length)
        self.vocab = list(SPECIALS) + _training_words()
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.pad_id, self.unk_id, self.bos_id, self.eos_id = 0, 1, 2, 3

    def __len__(self) -> int:
        return len(self.vocab)

    def words(self, text: str) -> list[str]:
        return _TOKEN.findall(text.lower())

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise ValueError(f"text: got {type(text).__name__}, expected a string")
        return [self.index.get(w, self.unk_id) for w in self.words(text)]

    def __call__(self, texts) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, (list, tuple)) or not texts:
            raise ValueError("texts: expected a non-empty list of strings")
        out = torch.full((len(texts), self.context_length), self.pad_id, dtype=torch.long)
        for i, text in enumerate(texts):
            ids = [self.bos_id] + self.encode(text) + [self.eos_id]
            if len(ids) > self.context_length:
                raise ValueError(f"texts[{i}]: {len(ids)} tokens with <bos>/<eos>, more than "
                                 f"context_length={self.context_length}")
            out[i, :len(ids)] = torch.tensor(ids)
        return out

    def decode(self, ids) -> str:
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        return " ".join(self.vocab[i] for i in ids if i not in (self.pad_id, self.bos_id, self.eos_id))


# --------------------------------------------------------------------------- the dataset
def world_config(split: str, n: int, modalities, seed: int, image_size: int | None = None,
                 two_object_frac: float | None = None) -> dict:
    """The full, explicit config a dataset is built (and cached) from."""
    _validate.one_of("split", split, SPLITS)
    _validate.positive_int("n", n)
    mods = (modalities,) if isinstance(modalities, str) else tuple(modalities)
    for m in mods:
        _validate.one_of("modalities", m, MODALITIES)
    if not mods:
        raise ValueError("modalities: got an empty list, expected some of " + str(MODALITIES))
    if two_object_frac is None:
        two_object_frac = 0.0 if split in ("base", "novel") else 0.3
    return dict(split=split, n=n, modalities=sorted(set(mods)), seed=get_seed(seed),
                image_size=pick(32, 64) if image_size is None else _validate.positive_int("image_size", image_size),
                frames=pick(4, 8), sample_rate=pick(8000, 16000), duration=pick(0.25, 0.5),
                two_object_frac=float(two_object_frac), version=1)


def split_scenes(cfg: dict) -> Scenes:
    """The scenes of a split: disjoint seeds per split, and the design's held-out rules."""
    split, seed = cfg["split"], _SPLIT_SEED[cfg["split"]] + 7919 * cfg["seed"]
    kw = dict(two_object_frac=cfg["two_object_frac"])
    if split == "compositions":
        kw.update(exclude_pairs=(), only_pairs=NOVEL_PAIRS)
    elif split == "base":
        kw.update(shapes=BASE_SHAPES)
    elif split == "novel":
        kw.update(shapes=NOVEL_SHAPES)
    return sample_scenes(cfg["n"], seed, **kw)


def build_columns(cfg: dict) -> dict[str, np.ndarray | list]:
    """Every column of a split as numpy arrays (or lists of strings)."""
    sc = split_scenes(cfg)
    cols: dict = {}
    for name in ("shape", "colour", "size", "position", "motion"):
        cols[name] = getattr(sc, name)[:, 0].numpy()
        cols[name + "2"] = getattr(sc, name)[:, 1].numpy()
    cols["n_objects"] = sc.n_objects.numpy()
    cols["scene_seed"] = sc.seed.numpy()
    held = cfg["split"] == "paraphrase"
    seed = _SPLIT_SEED[cfg["split"]] + cfg["seed"]
    cols["caption"], spec = captions(sc, seed, style="full", held_out=held)
    cols["caption_spec"] = spec.numpy()
    cols["partial"], pspec = captions(sc, seed + 1, style="partial", held_out=held)
    cols["partial_spec"] = pspec.numpy()
    mods = cfg["modalities"]
    if "image" in mods:
        cols["image"] = (render_images(sc, cfg["image_size"]) * 255).round().to(torch.uint8).numpy()
    if "audio" in mods:
        wave = render_audio(sc, cfg["sample_rate"], cfg["duration"])
        cols["audio"] = wave.numpy()
        cols["mel"] = log_mel(wave, cfg["sample_rate"]).numpy()
    if "video" in mods:
        vid = render_video(sc, cfg["image_size"], cfg["frames"])
        cols["video"] = (vid * 255).round().to(torch.uint8).numpy()
    return cols


def _arrow_column(x):
    import pyarrow as pa
    from datasets.features.features import (Array2DExtensionType, Array3DExtensionType,
                                            Array4DExtensionType)
    if isinstance(x, list):
        return pa.array(x, type=pa.string())
    if x.ndim == 1:
        return pa.array(x)
    if x.ndim == 2 and x.shape[1] <= 16:
        return pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])
    arr = pa.array(np.ascontiguousarray(x).reshape(-1))
    for d in reversed(x.shape[1:]):
        arr = pa.ListArray.from_arrays(pa.array(np.arange(0, len(arr) + 1, d, dtype=np.int32)), arr)
    if x.ndim == 2:
        return arr
    ext = {3: Array2DExtensionType, 4: Array3DExtensionType, 5: Array4DExtensionType}[x.ndim]
    return pa.ExtensionArray.from_storage(ext(tuple(x.shape[1:]), str(x.dtype)), arr)


def load_world(split: str = "train", n: int | None = None, modalities=("image", "text"),
               seed: int | None = None, *, image_size: int | None = None,
               two_object_frac: float | None = None, progress: bool = True):
    """One split of the world as a torch-formatted ``datasets.Dataset``, cached on disk.

    Splits: ``train``/``val``/``test`` (disjoint seeds); ``compositions`` (shape-colour
    pairs never in the other splits); ``base``/``novel`` (single objects whose shapes
    are the first / last three); ``paraphrase`` (test-like scenes captioned with
    held-out synonyms and templates). Modalities: any of image, text, audio, video.

    Columns: attribute indices (``shape``, ``colour``, ..., ``shape2``..., -1 when absent),
    ``caption``/``caption_spec``, ``partial``/``partial_spec``, and per modality ``image``
    ``[3, H, W]`` uint8, ``audio`` ``[L]`` and ``mel`` ``[M, T]`` floats, ``video``
    ``[T, 3, H, W]`` uint8. Same config and seed give byte-identical data.
    """
    import datasets
    from . import cache

    if n is None:
        n = pick(quick={"train": 20000}.get(split, 2000), full={"train": 100000}.get(split, 5000))
    cfg = world_config(split, n, modalities, seed, image_size, two_object_frac)
    name = f"world-{split}-{cache.key(cfg)}"

    def build(folder):
        cols = build_columns(cfg)
        import pyarrow as pa
        table = pa.table({k: _arrow_column(v) for k, v in cols.items()})
        ds = datasets.Dataset(table, info=datasets.DatasetInfo(description=json.dumps(cfg)),
                              fingerprint=cache.key(cfg))   # the config is the identity: no hashing of the table
        ds.save_to_disk(str(folder))

    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bar()
    try:
        folder = cache.cached_folder(name, build)
        ds = datasets.load_from_disk(str(folder))
    finally:
        if was_enabled and progress:
            datasets.enable_progress_bar()
    return ds.with_format("torch")


def config_of(ds) -> dict:
    """The config a dataset from ``load_world`` was built from."""
    try:
        return json.loads(ds.info.description)
    except (AttributeError, TypeError, ValueError):
        raise ValueError("ds: expected a dataset made by tutorlib.world.load_world") from None


def tensors(ds, columns=None) -> dict[str, torch.Tensor]:
    """Whole columns of a ``load_world`` dataset as tensors, read straight from Arrow
    (fast, and images stay ``uint8``: use ``images_float`` per batch).

    Text columns come back as lists of strings.
    """
    import pyarrow as pa
    config_of(ds)
    names = ds.column_names if columns is None else ([columns] if isinstance(columns, str) else list(columns))
    out = {}
    for name in names:
        if name not in ds.column_names:
            raise ValueError(f"columns: got {name!r}, expected one of {ds.column_names}")
        col = ds.data.column(name).combine_chunks()
        if col.type == "string":
            out[name] = col.to_pylist()
            continue
        feat = ds.features[name]
        shape = getattr(feat, "shape", None) or ((feat.length,) if hasattr(feat, "length") else ())
        if hasattr(col, "storage"):
            col = col.storage
        while pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type):
            col = col.flatten()
        arr = col.to_numpy(zero_copy_only=False)
        out[name] = torch.from_numpy(np.array(arr).reshape((len(ds),) + tuple(s for s in shape if s)))
    return out


def images_float(x: torch.Tensor) -> torch.Tensor:
    """Integer images or videos (0..255, as stored) to floats in ``[0, 1]``; floats pass through."""
    _validate.tensor("x", x, None, floating=False)
    return x.float() if x.is_floating_point() else x.float() / 255


def scenes_of(ds) -> Scenes:
    """The ``Scenes`` behind a ``load_world`` dataset (to re-render or caption them)."""
    t = tensors(ds, ["shape", "colour", "size", "position", "motion", "shape2", "colour2",
                     "size2", "position2", "motion2", "scene_seed"])
    return Scenes(*[torch.stack([t[a], t[a + "2"]], 1).long()
                    for a in ("shape", "colour", "size", "position", "motion")],
                  seed=t["scene_seed"].long())
