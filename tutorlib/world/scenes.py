"""Scenes: batches of one- or two-object scenes as integer attribute tensors, drawn at
random (``sample_scenes``) or named (``make_scenes``)."""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from ..core import _validate
from ..core.runtime import get_seed
from .vocabulary import ATTRIBUTES, COLOURS, MOTIONS, NOVEL_PAIRS, POSITIONS, SHAPES, SIZES


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


def scene_attributes(scenes: Scenes) -> torch.Tensor:
    """``[N, 2, 4]``: (shape, colour, size, position) of each object (-1 if absent)."""
    return torch.stack([scenes.shape, scenes.colour, scenes.size, scenes.position], -1)


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
    allowed = torch.arange(len(SHAPES)) if shapes is None else torch.tensor(list(shapes))
    if len(allowed) == 0 or bool(((allowed < 0) | (allowed >= len(SHAPES))).any()):
        raise ValueError(f"shapes: got {shapes!r}, expected indices in 0..{len(SHAPES) - 1}")
    banned = torch.zeros(len(SHAPES), len(COLOURS), dtype=torch.bool)
    for s, c in exclude_pairs or ():
        banned[s, c] = True
    g = torch.Generator().manual_seed(seed)
    s0, c0, z0, m0 = _draw_objects(g, n, allowed, banned, only_pairs)
    p0 = torch.randint(len(POSITIONS), (n,), generator=g)
    two = torch.rand(n, generator=g) < two_object_frac
    s1, c1, z1, m1 = _draw_objects(g, n, allowed, banned, None)
    p1 = (p0 + torch.randint(1, len(POSITIONS), (n,), generator=g)) % len(POSITIONS)
    none = torch.full((n,), -1)
    cols = [torch.stack([a, torch.where(two, b, none)], 1)
            for a, b in ((s0, s1), (c0, c1), (z0, z1), (p0, p1), (m0, m1))]
    scene_seed = torch.randint(0, 2**31 - 1, (n,), generator=g)
    return Scenes(*cols, seed=scene_seed)


def _draw_objects(g: torch.Generator, k: int, allowed: torch.Tensor, banned: torch.Tensor,
                  only_pairs) -> tuple[torch.Tensor, ...]:
    """Shape, colour, size and motion of ``k`` objects: shapes from ``allowed``, no
    ``banned`` [shape, colour] pair, (shape, colour) from ``only_pairs`` if given."""
    shape = allowed[torch.randint(len(allowed), (k,), generator=g)]
    colour = torch.randint(len(COLOURS), (k,), generator=g)
    if only_pairs is not None:
        pairs = torch.tensor(list(only_pairs))
        chosen = pairs[torch.randint(len(pairs), (k,), generator=g)]
        shape, colour = chosen[:, 0], chosen[:, 1]
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
