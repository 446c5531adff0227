"""The world's vocabulary: attribute values, their colours and words, the caption
grammar's pieces, and the split rules (held-out pairs and shapes, split seeds)."""
from __future__ import annotations

import torch

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
# Each split draws its scenes and captions from its own seeds: the splits are disjoint.
SPLIT_SEEDS = {name: 1000 * (i + 1) for i, name in enumerate(SPLITS)}
