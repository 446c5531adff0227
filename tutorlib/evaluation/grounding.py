"""Where words point (lesson 07): each word token's best patch, scored against the world's
object masks. No real dataset can do this without box annotations; the world knows where
every object is and which words name it.

    cover = patch_coverage(world.object_masks(scenes), patch_size=8)   # [N, 2, P] pixel shares
    named, kind = named_objects(ids, scenes, tokenizer)     # [N, L]: which object a word names
    sim = word_patch_similarity(image_tokens, text_tokens)  # [N, L, P], scene i with caption i
    hit, chance = pointing(sim, named, cover)               # per named word
    pointing_rates(image_tokens, text_tokens, named, kind, cover, two_object)   # rates by kind

A word *points at* the object it names when its best patch holds more of that object's pixels
than of the other object's. Chance is the same rule for a patch drawn at random: the share of
the image's patches where the named object covers more than the other (its area, in patches).

Two controls ask whether a hit is *naming* or only *objectness* (a token's best patch lands on
some object whatever the token says): ``null_pointing`` scores, by the same rule, the best patch
of a token that names nothing (``<bos>``, "a"; ``token_columns`` finds it) against the objects
the caption's words name; ``named_or_other`` asks, in two-object scenes, how often a word's best
patch lies on the object it names rather than on the other one (0.5 if it cannot tell them apart).

``absent_columns`` gives a third null, a colour or shape word naming an object absent from the
scene. ``patch_winners``, ``winner_shares`` and ``own_word`` read s^I's side: which token wins
each patch's max. ``swap_tests``: does an image prefer its true caption to its swapped twin?
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core import _validate
from .. import world
from ..objectives import finegrained
from . import metrics

KINDS = ("colour", "shape")          # the words whose object is known: kind 1 = colour, 2 = shape


def patch_coverage(masks: torch.Tensor, patch_size: int) -> torch.Tensor:
    """The share of each patch's pixels that each object covers: ``masks`` ``[N, K, H, W]``
    bool (``world.object_masks``) -> ``[N, K, P]`` in [0, 1], patches in the towers' order
    (row by row, as ``ImageTower.patchify`` flattens them)."""
    _validate.tensor("masks", masks, 4, floating=False, finite=False)
    _validate.positive_int("patch_size", patch_size)
    if masks.shape[-1] % patch_size or masks.shape[-2] % patch_size:
        raise ValueError(f"masks: got {tuple(masks.shape[-2:])} pixels, "
                         f"expected multiples of patch_size={patch_size}")
    return F.avg_pool2d(masks.float(), patch_size).flatten(2)


def _word_table(tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """Per vocabulary id: its kind (0 other, 1 colour, 2 shape) and the value it names."""
    kind = torch.zeros(len(tokenizer), dtype=torch.long)
    value = torch.full((len(tokenizer),), -1, dtype=torch.long)
    for k, names in ((1, world.COLOURS), (2, world.SHAPES)):
        for v, name in enumerate(names):
            for word in world.SYNONYMS[name][0] + world.SYNONYMS[name][1]:
                if word in tokenizer.index:
                    kind[tokenizer.index[word]], value[tokenizer.index[word]] = k, v
    return kind, value


def named_objects(ids: torch.Tensor, scenes, tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """For captions ``ids`` ``[N, L]`` of ``scenes`` (caption i of scene i): which object
    (0 or 1) each token names, ``[N, L]`` long, -1 for tokens that name none; and each
    token's kind ``[N, L]`` (1 colour word, 2 shape word, 0 other). A colour or shape word
    names the scene's one object with that value; -1 when both objects share it."""
    _validate.tensor("ids", ids, 2, floating=False)
    if not isinstance(scenes, world.Scenes) or len(scenes) != len(ids):
        got = f"{len(scenes)} scenes" if isinstance(scenes, world.Scenes) else type(scenes).__name__
        raise ValueError(f"scenes: got {got}, "
                         f"expected a world.Scenes with one scene per caption ({len(ids)})")
    kind_of, value_of = _word_table(tokenizer)
    kind, value = kind_of[ids], value_of[ids]                # [N, L]
    attrs = torch.stack([scenes.colour, scenes.shape], 1)    # [N, 2 kinds, 2 objects]
    # [N, L, 2]
    per_kind = attrs[torch.arange(len(ids))[:, None], (kind - 1).clamp_min(0)]
    same = per_kind == value[..., None]                      # which objects have it
    named = torch.where(same.sum(-1) == 1, same.long().argmax(-1), -1)
    named = torch.where(kind > 0, named, -1)
    return named, torch.where(named >= 0, kind, 0)


def word_patch_similarity(image_tokens: torch.Tensor, text_tokens: torch.Tensor) -> torch.Tensor:
    """Cosine of every word token with every patch token of its own image: ``image_tokens``
    ``[N, P, d]`` and ``text_tokens`` ``[N, L, d]`` (caption i of image i) -> ``[N, L, P]``."""
    _validate.tensor("image_tokens", image_tokens, 3)
    _validate.tensor("text_tokens", text_tokens, 3)
    _validate.same_rows("image_tokens", image_tokens, "text_tokens", text_tokens)
    _validate.same_width("image_tokens", image_tokens, "text_tokens", text_tokens)
    return F.normalize(text_tokens, dim=-1) @ F.normalize(image_tokens, dim=-1).transpose(1, 2)


def _check_pointing(sim, named, coverage) -> None:
    _validate.tensor("sim", sim, 3, finite=False)
    _validate.tensor("named", named, 2, floating=False)
    _validate.tensor("coverage", coverage, 3, finite=False)
    if named.shape != sim.shape[:2] or coverage.shape != (sim.shape[0], 2, sim.shape[2]):
        raise ValueError(f"sim, named, coverage: got shapes {tuple(sim.shape)}, "
                         f"{tuple(named.shape)}, {tuple(coverage.shape)}, "
                         "expected [N, L, P], [N, L] and [N, 2, P]")


def pointing(sim: torch.Tensor, named: torch.Tensor,
             coverage: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Whether each word that names an object points at it: ``sim`` ``[N, L, P]``
    (``word_patch_similarity``), ``named`` ``[N, L]`` (``named_objects``), ``coverage``
    ``[N, 2, P]`` (``patch_coverage``). Returns, for the ``W`` tokens with ``named >= 0`` in
    row-major order, ``hit`` ``[W]`` bool (its best patch holds more of the named object than
    of the other) and ``chance`` ``[W]`` (the share of patches where that holds)."""
    _check_pointing(sim, named, coverage)
    mine, other, best = _named_cover(sim, named, coverage)
    wins = mine > other
    return wins.gather(1, best[:, None]).squeeze(1), wins.float().mean(1)


def _named_cover(sim, named, coverage):
    """Words with ``named >= 0``: their object's, the other's cover [W, P]; best patch [W]."""
    rows, cols = torch.nonzero(named >= 0, as_tuple=True)
    obj = named[rows, cols]
    return coverage[rows, obj], coverage[rows, 1 - obj], sim[rows, cols].argmax(-1)


def pointing_rates(image_tokens: torch.Tensor, text_tokens: torch.Tensor, named: torch.Tensor,
                   kind: torch.Tensor, coverage: torch.Tensor, two_object: torch.Tensor) -> dict:
    """How often the named words point at their objects (``pointing``), by kind, with chance:
    ``image_tokens`` ``[N, P, d]`` and ``text_tokens`` ``[N, L', d]`` (caption i of image i,
    ``L'`` of ``named``'s ``L`` columns: the rest must name nothing), ``named`` and ``kind``
    ``[N, L]`` (``named_objects``), ``coverage`` ``[N, 2, P]``, ``two_object`` ``[N]`` bool.
    Returns the rate over all words, colour words, shape words and words of two-object
    scenes, and the chance over all words and over those of two-object scenes."""
    _validate.tensor("text_tokens", text_tokens, 3)
    _validate.tensor("two_object", two_object, 1, floating=False)
    L = text_tokens.shape[1]
    if named.shape != kind.shape or named.shape[1] < L or bool((named[:, L:] >= 0).any()):
        raise ValueError(f"named, kind: got shapes {tuple(named.shape)} and {tuple(kind.shape)}, "
                         f"expected the same [N, L >= {L}], naming no word past the {L} tokens")
    _validate.same_rows("named", named, "two_object", two_object)
    named, kind = named[:, :L], kind[:, :L]
    hit, chance = pointing(word_patch_similarity(image_tokens, text_tokens), named, coverage)
    words = named >= 0
    word_kind, two = kind[words], two_object[:, None].expand_as(named)[words]
    rate = lambda sel: hit[sel].float().mean().item()          # noqa: E731
    return {"all words": rate(slice(None)), "colour words": rate(word_kind == 1),
            "shape words": rate(word_kind == 2), "two-object scenes": rate(two),
            "chance (all)": chance.mean().item(), "chance (two-object)": chance[two].mean().item()}


def token_columns(ids: torch.Tensor, token_id: int) -> torch.Tensor:
    """The first column of each caption of ``ids`` ``[N, L]`` that holds ``token_id``, ``[N]``
    long, -1 where the caption has none (``<bos>`` is column 0 of every caption)."""
    _validate.tensor("ids", ids, 2, floating=False)
    if not isinstance(token_id, int) or isinstance(token_id, bool) or token_id < 0:
        raise ValueError(f"token_id: got {token_id!r}, expected a vocabulary id (an int >= 0)")
    hit = ids == token_id
    return torch.where(hit.any(1), hit.long().argmax(1), -1)


def null_pointing(sim: torch.Tensor, named: torch.Tensor, coverage: torch.Tensor,
                  columns: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``pointing`` with a token that names nothing standing in for every word: for each word
    with ``named >= 0`` in a caption whose ``columns`` entry is a column (``>= 0``), whether the
    best patch of the token at that column holds more of the word's object than of the other.
    ``sim`` ``[N, L, P]``, ``named`` ``[N, L]``, ``coverage`` ``[N, 2, P]``, ``columns`` ``[N]``
    long (``token_columns``). Returns ``(hit [W'], chance [W'])`` over those ``W'`` words, in
    ``pointing``'s order: as often as the words themselves means the words' hits are objectness."""
    _check_pointing(sim, named, coverage)
    _validate.tensor("columns", columns, 1, floating=False)
    if len(columns) != len(sim) or bool((columns >= sim.shape[1]).any()):
        raise ValueError(f"columns: got shape {tuple(columns.shape)} with largest entry "
                         f"{int(columns.max()) if len(columns) else None}, expected [{len(sim)}] "
                         f"entries below the {sim.shape[1]} token columns (-1: no such token)")
    has = columns >= 0
    proxy = sim[torch.arange(len(sim)), columns.clamp_min(0)][:, None].expand_as(sim)
    return pointing(proxy, torch.where(has[:, None], named, -1), coverage)


def named_or_other(sim: torch.Tensor, named: torch.Tensor,
                   coverage: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """In two-object scenes, whether a word's best patch lies on the object it names or on the
    other one. ``sim`` ``[N, L, P]``, ``named`` ``[N, L]``, ``coverage`` ``[N, 2, P]``; only
    rows whose second object covers some patch count. Returns, for those ``W`` named words in
    ``pointing``'s order, ``on_named`` ``[W]`` bool (more of its object than of the other in the
    best patch), ``on_other`` ``[W]`` bool (the reverse), and ``chance`` ``[W]``: among the
    patches where one object dominates, the share where the named one does (about 0.5). The
    rate is ``on_named`` over ``on_named | on_other``; 0.5 is a token that sees objects but not
    which one it names."""
    _check_pointing(sim, named, coverage)
    two = coverage[:, 1].sum(-1) > 0                                          # [N]
    named = torch.where(two[:, None], named, -1)
    mine, other, best = _named_cover(sim, named, coverage)
    on_named = (mine > other).gather(1, best[:, None]).squeeze(1)
    on_other = (other > mine).gather(1, best[:, None]).squeeze(1)
    chance = (mine > other).sum(1) / ((mine > other) | (other > mine)).sum(1).clamp_min(1)
    return on_named, on_other, chance.float()


def absent_columns(ids: torch.Tensor, scenes, tokenizer) -> torch.Tensor:
    """A null no training can make its own: the first column of each caption of ``ids``
    ``[N, L]`` holding a colour or shape word whose value no object of ``scenes[n]`` has
    (scored against scene n's patches, it names an absent object), ``[N]`` long, -1 if none."""
    _validate.tensor("ids", ids, 2, floating=False)
    if not isinstance(scenes, world.Scenes) or len(scenes) != len(ids):
        raise ValueError(f"scenes: got {type(scenes).__name__}, expected a world.Scenes of {len(ids)} scenes")
    (kind_of, value_of), attrs = _word_table(tokenizer), torch.stack([scenes.colour, scenes.shape], 1)
    kind, value = kind_of[ids], value_of[ids]                             # attrs [N, 2 kinds, 2 objects]
    present = (attrs[torch.arange(len(ids))[:, None], (kind - 1).clamp_min(0)] == value[..., None]).any(-1)
    return torch.where(((kind > 0) & ~present).any(1), ((kind > 0) & ~present).long().argmax(1), -1)


def patch_winners(sim: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """The token of its own caption that wins each patch's max over words in ``s^I``:
    ``sim`` ``[N, L, P]`` (``word_patch_similarity``), ``allowed`` ``[N, L]`` bool (the real
    tokens, minus any kept out of the max) -> the winning column ``[N, P]`` long."""
    _validate.tensor("sim", sim, 3, finite=False), _validate.tensor("allowed", allowed, 2, floating=False)
    if allowed.shape != sim.shape[:2] or not bool(allowed.any(1).all()):
        raise ValueError(f"allowed: got shape {tuple(allowed.shape)}, expected "
                         f"{tuple(sim.shape[:2])} with a True in every row")
    return sim.masked_fill(~allowed[..., None], float("-inf")).argmax(1)


def winner_shares(winners: torch.Tensor, ids: torch.Tensor, tokenizer) -> dict:
    """The share of patches whose max ``winners`` ``[N, P]`` (``patch_winners``) is won by
    ``<bos>``, ``<eos>``, a colour or shape word, or another word of captions ``ids`` ``[N, L]``."""
    _validate.tensor("winners", winners, 2, floating=False), _validate.tensor("ids", ids, 2, floating=False)
    if len(ids) != len(winners) or bool((winners >= ids.shape[1]).any()):
        raise ValueError(f"winners: got shape {tuple(winners.shape)}, expected [{len(ids)}, P] "
                         f"columns below the {ids.shape[1]} of ids")
    won = ids.gather(1, winners)
    ends = {"<bos>": won == tokenizer.bos_id, "<eos>": won == tokenizer.eos_id,
            "colour or shape word": _word_table(tokenizer)[0][won] > 0}
    ends["other word"] = ~(ends["<bos>"] | ends["<eos>"] | ends["colour or shape word"])
    return {k: v.float().mean().item() for k, v in ends.items()}


def own_word(winners: torch.Tensor, named: torch.Tensor, coverage: torch.Tensor,
             allowed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each patch one object dominates (more of its pixels than of the other's), whether the
    token winning it (``winners`` ``[N, P]``) names that object (``named`` ``[N, L]``,
    ``coverage`` ``[N, 2, P]``): ``(hit [W], chance [W])``, chance the share of the ``allowed``
    ``[N, L]`` tokens that name it (a winner drawn at random among them)."""
    _check_pointing(torch.empty(*named.shape, coverage.shape[-1]), named, coverage)
    if winners.shape != (len(named), coverage.shape[-1]) or allowed.shape != named.shape:
        raise ValueError(f"winners, allowed: got shapes {tuple(winners.shape)}, {tuple(allowed.shape)}, "
                         f"expected [{len(named)}, {coverage.shape[-1]}] and {tuple(named.shape)}")
    a, b = coverage[:, 0], coverage[:, 1]                                 # obj [N, P]: -1 where none dominates
    obj = torch.where(a > b, 0, torch.where(b > a, 1, -1))
    rows, cols = torch.nonzero(obj >= 0, as_tuple=True)
    o = obj[rows, cols]
    names = (named[rows] == o[:, None]) & allowed[rows]                   # [W, L]
    return names.gather(1, winners[rows, cols][:, None]).squeeze(1), names.sum(1) / allowed[rows].sum(1)


def matched_patches(pool: torch.Tensor, counts: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """``counts[n]`` patches drawn at random (``seed``) from each image's ``pool`` ``[N, P]``
    bool (all of the pool where it holds fewer): ``[N, P]`` bool. Drawing background patches in
    the number of each image's object patches lets the two groups vote like for like."""
    _validate.tensor("pool", pool, 2, floating=False)
    _validate.tensor("counts", counts, 1, floating=False)
    if len(counts) != len(pool) or bool((counts < 0).any()):
        raise ValueError(f"counts: got shape {tuple(counts.shape)}, expected [{len(pool)}] "
                         "non-negative patch counts, one per row of pool")
    r = torch.rand(pool.shape, generator=torch.Generator().manual_seed(seed))
    rank = r.masked_fill(~pool.bool(), 2.0).argsort(1).argsort(1)           # pool first, shuffled
    return pool.bool() & (rank < counts[:, None].to(rank.device))


def rate_interval(hits: torch.Tensor, z: float = 1.96) -> tuple[float, float, int]:
    """A rate over ``hits`` ``[n]`` bool and its normal-approximation half-width
    ``z * sqrt(p (1 - p) / n)``: ``(p, half_width, n)``."""
    _validate.tensor("hits", hits, 1, floating=False)
    if len(hits) == 0:
        raise ValueError("hits: got an empty tensor, expected at least one trial")
    p, n = hits.float().mean().item(), len(hits)
    return p, z * (p * (1 - p) / n) ** 0.5, n


@torch.no_grad()
def swap_tests(model, encoding: dict, swaps: dict) -> dict:
    """The binding tests of a mini-CLIP-shaped ``model`` on its ``finegrained.encode`` dict
    ``encoding`` of N scenes: ``swaps`` ``{test name: (true_ids [n, L], swapped_ids [n, L],
    ok [N] bool)}``, the n captions of the scenes where ``ok``. For each test: how often the
    image prefers its true caption by the pooled ``cosine`` (``metrics.binding_accuracy``), by
    ``s^I`` and by ``s^T`` (``finegrained.paired_scores``), and the number of ``pairs``, keyed
    ``(test name, score)``."""
    if not isinstance(encoding, dict) or not {"x", "image"} <= set(encoding):
        raise ValueError("encoding: expected the dict of finegrained.encode(model, images, ids)")
    if not isinstance(swaps, dict) or not swaps:
        raise ValueError(f"swaps: got {type(swaps).__name__}, "
                         "expected {name: (true_ids, swapped_ids, ok)}")
    out = {}
    for test_name, (a, b, ok) in swaps.items():
        x = encoding["x"][ok]
        ea, eb = (finegrained.encode_text(getattr(model, "text_tower", None), ids) for ids in (a, b))   # one pass each
        (ai, at), (bi, bt) = (finegrained.paired_scores(x, e["y"], e["mask"]) for e in (ea, eb))
        out[(test_name, "cosine")] = metrics.binding_accuracy(encoding["image"][ok], ea["text"], eb["text"])
        out[(test_name, "s^I")] = (ai > bi).float().mean().item()
        out[(test_name, "s^T")] = (at > bt).float().mean().item()
        out[(test_name, "pairs")] = int(ok.sum())
    return out
