"""Captions of scenes from a small grammar, what each caption asserts (its *spec*),
which scenes satisfy which caption (``matches``), attribute-swapped binding
negatives (``swap_captions``) and one zero-shot prompt per class (``class_prompts``)."""
from __future__ import annotations

import random
import re
from dataclasses import fields

import torch

from ..core import _validate
from ..core.runtime import get_seed
from ..core.ops import in_chunks
from .scenes import Scenes, scene_attributes
from .vocabulary import (ATTRIBUTES, COLOURS, NOUNS, PARTIALS, POSITIONS, RELATIONS, SHAPES,
                         SIZES, SYNONYMS, TEMPLATES)

SPEC_WIDTH = 9   # [shape, colour, size, position] for object A and B, then the relation
_OBJ_FIELDS = ("shape", "colour", "size", "position")
_ARTICLE = re.compile(r"\ba (?=[aeiou])")
_FLIP = {1: 2, 2: 1, 3: 4, 4: 3}


def _word(name: str, rng: random.Random | None, held_out: bool) -> str:
    train, test = SYNONYMS[name]
    if rng is None:                       # canonical: the first, plainest word
        return train[0]
    return rng.choice(test if held_out else train)


def _position_words(p: int, rng: random.Random, held_out: bool) -> str:
    parts = POSITIONS[p].split()
    return " ".join(_word(w, rng, held_out) for w in parts)


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


def _partial_caption(objs, rng: random.Random, held_out: bool) -> tuple[str, list[int]]:
    """Some attributes of one of the objects: "a red object", "a star in the top left"."""
    names = rng.choice(PARTIALS)
    obj = objs[rng.randrange(len(objs))]
    text = f"a {_object_phrase(obj, names, rng, held_out)}"
    if "position" in names:
        text += f" in the {_position_words(obj[3], rng, held_out)}"
    spec = [v if f in names else -1 for f, v in zip(_OBJ_FIELDS, obj)] + [-1] * 4 + [0]
    return text, spec


def _pair_caption(objs, canonical: bool, rng: random.Random,
                  held_out: bool) -> tuple[str, list[int]]:
    """Both objects of a two-object scene, joined by "and" or their spatial relation."""
    words_rng = None if canonical else rng
    held = held_out and not canonical
    rel = _relation(objs[0][3], objs[1][3]) if canonical or rng.random() < 0.7 else 0
    a, b = objs
    if not canonical and rel and rng.random() < 0.5:    # say it from B's side
        a, b, rel = b, a, _FLIP[rel]
    pa = _object_phrase(a, _OBJ_FIELDS[:3], words_rng, held)
    pb = _object_phrase(b, _OBJ_FIELDS[:3], words_rng, held)
    return f"a {pa} {RELATIONS[rel]} a {pb}", list(a[:3]) + [-1] + list(b[:3]) + [-1, rel]


def _single_caption(obj, canonical: bool, rng: random.Random,
                    held_out: bool) -> tuple[str, list[int]]:
    """Every attribute of a lone object, in one of the templates."""
    words_rng = None if canonical else rng
    held = held_out and not canonical
    template = TEMPLATES[0][0] if canonical else rng.choice(TEMPLATES[1 if held else 0])
    pos = _position_words(obj[3], words_rng, held)
    if template.startswith("{pos}:"):
        pos = pos.replace(" ", "-")
    text = template.format(obj=_object_phrase(obj, _OBJ_FIELDS[:3], words_rng, held), pos=pos)
    return text, list(obj) + [-1] * 4 + [0]


def _caption(objs, style: str, rng: random.Random, held_out: bool) -> tuple[str, list[int]]:
    """One caption and its spec for a scene given as a list of object tuples."""
    if style == "partial":
        text, spec = _partial_caption(objs, rng, held_out)
    elif len(objs) == 2:
        text, spec = _pair_caption(objs, style == "canonical", rng, held_out)
    else:
        text, spec = _single_caption(objs[0], style == "canonical", rng, held_out)
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


def describe(scenes: Scenes, i: int = 0) -> str:
    """A plain-English description of scene ``i`` of ``scenes`` (its canonical caption)."""
    if not isinstance(scenes, Scenes):
        raise ValueError(f"scenes: got {type(scenes).__name__}, expected a world.Scenes")
    return captions(scenes[i], style="canonical")[0][0]


def swap_captions(scenes: Scenes, seed: int = 0, attribute: str = "colour",
                  held_out: bool = False) -> tuple[list[str], list[str], torch.Tensor]:
    """Binding test pairs: each two-object scene's full caption, and the same caption
    (same words, template and relation) with ``attribute`` swapped *between* the two
    objects: "a red circle and a blue square" vs "a blue circle and a red square".

    Returns (true captions, swapped captions, ``valid`` ``[N]`` bool): ``valid`` marks
    two-object scenes whose swapped caption is *false* of the scene. Others cannot be
    negatives: one object, equal values, or a swap that says the same thing ("a red
    star and a blue star" -> "a blue star and a red star").

    ``attribute="position"`` swaps the two objects' places: the words stay and the relation
    flips ("a red star left of a blue circle" -> "a red star right of a blue circle"), the
    relation-swap test of lesson 07; captions joined by a plain "and" are not valid."""
    _validate.one_of("attribute", attribute, ("shape", "colour", "size", "position"))
    swapped = Scenes(**{f.name: getattr(scenes, f.name).clone() for f in fields(scenes)})
    col = getattr(swapped, attribute)
    col[:] = col.flip(1).where(scenes.shape[:, 1:2] >= 0, col)
    true_texts, _ = captions(scenes, seed, held_out=held_out)
    swap_texts, swap_specs = captions(swapped, seed, held_out=held_out)   # same seed: same words
    values = getattr(scenes, attribute)
    attrs = scene_attributes(scenes)
    rows = torch.arange(len(attrs))
    still_true = (in_chunks(lambda r: matches(attrs[r], swap_specs[r]).diagonal(), rows, 512)
                  if len(attrs) else torch.zeros(0, dtype=torch.bool))
    valid = (scenes.shape[:, 1] >= 0) & (values[:, 0] != values[:, 1]) & ~still_true
    return true_texts, swap_texts, valid


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
    rel = specs[:, 8]
    pair01 = a[:, 0] & b[:, 1] & _relations_hold(attrs[:, 0, 3], attrs[:, 1, 3])[:, rel]
    pair10 = a[:, 1] & b[:, 0] & _relations_hold(attrs[:, 1, 3], attrs[:, 0, 3])[:, rel]
    single = a.any(1)
    return torch.where(has_b[None], pair01 | pair10, single)


def _relations_hold(pos_a: torch.Tensor, pos_b: torch.Tensor) -> torch.Tensor:
    """``[N, 5]``: whether each relation of ``RELATIONS`` holds from grid cell A to B."""
    col_a, row_a, col_b, row_b = pos_a % 3, pos_a // 3, pos_b % 3, pos_b // 3
    return torch.stack([torch.ones_like(col_a, dtype=torch.bool), col_a < col_b, col_a > col_b,
                        row_a < row_b, row_a > row_b], 1)


def class_prompts(attribute: str, held_out: bool = False) -> list[str]:
    """One zero-shot prompt per class of ``attribute``, in the partial-caption form the
    models were trained on ("a red object", "a star", "an object in the top left").
    ``held_out=True`` words them with the paraphrase split's synonyms ("a scarlet item")."""
    _validate.one_of("attribute", attribute, ("shape", "colour", "size", "position"))
    noun = NOUNS[1][0] if held_out else NOUNS[0][0]
    word = (lambda w: SYNONYMS[w][1][0]) if held_out else (lambda w: SYNONYMS[w][0][0])
    if attribute == "shape":
        out = [f"a {word(s)}" for s in SHAPES]
    elif attribute == "position":
        out = [f"a {noun} in the " + " ".join(word(w) for w in p.split()) for p in POSITIONS]
    else:
        out = [f"a {word(v)} {noun}" for v in ATTRIBUTES[attribute]]
    return [_ARTICLE.sub("an ", p) for p in out]
