"""Lesson 08: alignment from few pairs. Two encoders stay frozen (MiniLM for captions, a
SimCLR image tower for images); only two small projectors learn, from N pairs, with
CLIP's loss, CWCL's weighted targets, STRUCTURE's neighbourhood regulariser, or both
(Maniparambil et al., CVPR 2025: freeze-align).

    train = fewpairs.features("train", 5000)          # frozen features, cached on disk
    img_proj, txt_proj, hist = fewpairs.train_projectors(train, 200, "cwcl")
    fewpairs.evaluate(img_proj, txt_proj, fewpairs.features("test"))
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..core import _validate, cache
from ..objectives import losses, structure
from ..evaluation import metrics
from ..zoo import pretrained, selfsup
from ..training import train
from .. import world
from ..core.runtime import get_seed
from ..zoo.minilm import load_minilm
from ..core.ops import in_chunks
from ..models.heads import mlp

METHODS = ("clip", "cwcl", "structure", "cwcl+structure")
CWCL_SOURCES = ("text", "image", "own", "attributes", "matches")
CWCL_FORMS = ("paper", "cosine")
# zero-shot on the paraphrase split's held-out wording
ATTRIBUTES = ("shape", "colour", "size")


def features(split: str, n: int | None = None, progress: bool = True) -> dict:
    """The frozen view of a world split (``pretrained.training_data(split, n)``): ``image``
    ``[N, layers, w]`` (every layer of ``selfsup.encoder()``'s tower, mean-pooled), ``text``
    ``[N, 384]`` (MiniLM of the full captions), and ``attrs`` / ``full_spec`` / ``caption`` for
    scoring, with ``positives`` ``[N, N]`` (scene i satisfies caption j) on every split but
    train (never scored)."""
    _validate.one_of("split", split, world.SPLITS)
    data = pretrained.training_data(split, n)
    tower, _ = selfsup.encoder(progress=progress)
    name = ("fewpairs-image-"
            f"{cache.key(selfsup.recipe().key, pretrained.training_config(split, n))}.safetensors")
    image = cache.cached_tensors(
        name, lambda: {"image": selfsup.layer_features(tower, data["image"])})["image"]
    out = {"image": image, "text": load_minilm().features(data["caption"], progress=progress),
           "attrs": data["attrs"], "full_spec": data["full_spec"], "caption": data["caption"]}
    if split != "train":
        out["positives"] = world.matches(data["attrs"], data["full_spec"])
    return out


def class_features(attr: str) -> torch.Tensor:
    """MiniLM features ``[C, 384]`` of one prompt per class of ``attr``, in held-out wording."""
    _validate.one_of("attr", attr, world.ATTRIBUTES)
    return load_minilm().features(world.class_prompts(attr, held_out=True), progress=False)


def attribute_vectors(attrs: torch.Tensor) -> torch.Tensor:
    """The world's ground truth as a vector per scene: ``attrs`` ``[N, 2, 4]`` (shape, colour,
    size, position of each object, -1 where absent) -> ``[N, A]`` float counts, one entry per
    attribute value (A = 6 + 6 + 2 + 9 in the default world), summed over the scene's objects.
    The cosine of two rows is the scenes' true attribute overlap: 1 for scenes that share
    every attribute, 0 for scenes that share none."""
    _validate.tensor("attrs", attrs, 3, floating=False)
    if attrs.shape[1:] != (2, 4):
        raise ValueError(f"attrs: got shape {tuple(attrs.shape)}, expected [N, 2, 4]")
    parts = []
    for j, name in enumerate(("shape", "colour", "size", "position")):
        a, k = attrs[:, :, j], len(world.ATTRIBUTES[name])
        parts.append((F.one_hot(a.clamp_min(0), k) * (a >= 0)[..., None]).sum(1))
    return torch.cat(parts, 1).float()


def cwcl_targets(source_emb: torch.Tensor, centre: bool = False, form: str = "paper") -> torch.Tensor:
    """CWCL's weights ``[N, N]`` from ``source_emb`` ``[N, d]``: ``form="paper"`` is
    ``losses.cwcl_weights`` (½ cos + ½, Eq. 3); ``form="cosine"`` (not in the paper) the cosine
    itself clamped to [0, 1], so that an unrelated item (cos <= 0) gets no weight. Diagonal 1."""
    _validate.one_of("form", form, CWCL_FORMS)
    w = losses.cwcl_weights(source_emb, centre)
    return w if form == "paper" else (2 * w - 1).clamp_min(0).fill_diagonal_(1.0)


def match_weights(attrs: torch.Tensor, full_spec: torch.Tensor, form: str = "cosine") -> torch.Tensor:
    """The retrieval ground truth as CWCL weights ``[N, N]``: w_ij = 1 if caption j (``full_spec``
    ``[N, 9]``) is true of scene i (``attrs`` ``[N, 2, 4]``; ``world.matches``), else 0, diagonal
    1; ``form="paper"`` maps it through ½ w + ½ as Eq. 3 maps a cosine. Rows are scenes."""
    _validate.one_of("form", form, CWCL_FORMS)
    w = world.matches(attrs, full_spec).float()
    return (w if form == "cosine" else w / 2 + 0.5).fill_diagonal_(1.0)


def optimum_margin(weights: torch.Tensor) -> dict[str, float]:
    """Where CWCL's loss is at its minimum, each row's softmax equals its target
    w_ij / Σ_j w_ij. With ``weights`` ``[N, N]`` (w_ii = 1 >= w_ij), the true partner is then
    still the top choice; how far ahead, averaged over rows: ``"weight margin"`` 1 - max_{j≠i}
    w_ij, ``"share margin"`` that divided by Σ_j w_ij (the probabilities' gap), ``"true share"``
    1 / Σ_j w_ij, and ``"ties"``, the fraction of rows where another item has w_ij = 1."""
    _validate.tensor("weights", weights, 2)
    if weights.shape[0] != weights.shape[1] or len(weights) < 2:
        raise ValueError(f"weights: got shape {tuple(weights.shape)}, expected [N, N], N >= 2")
    off = weights.masked_fill(torch.eye(len(weights), dtype=torch.bool), float("-inf"))
    gap, total = 1 - off.max(1).values, weights.sum(1)
    return {"weight margin": gap.mean().item(), "share margin": (gap / total).mean().item(),
            "true share": (1 / total).mean().item(), "ties": (gap <= 1e-6).float().mean().item()}


class Projector(torch.nn.Module):
    """A two-layer MLP on a frozen feature: ``[N, in_dim]`` -> ``[N, out_dim]``
    (``hidden=0``: one linear map)."""

    def __init__(self, in_dim: int, out_dim: int = 128, hidden: int = 256):
        super().__init__()
        for name, v in (("in_dim", in_dim), ("out_dim", out_dim)):
            _validate.positive_int(name, v)
        if hidden == 0:             # a linear map, as in freeze-align's token-average model
            self.net = torch.nn.Linear(in_dim, out_dim)
            return
        self.net = mlp(in_dim, hidden, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ProjectorPair(torch.nn.Module):
    """An image and a text ``Projector`` in one module, as ``DistributedDataParallel`` wraps
    them: ``forward(x [B, image_dim], y [B, text_dim])`` -> ``(image [B, out_dim], text [B,
    out_dim])``. ``seed``: ``torch.manual_seed(seed)`` first, so that every process (and every
    rebuild) starts from the same weights."""

    def __init__(self, image_dim: int, text_dim: int, seed: int | None = None, out_dim: int = 128,
                 hidden: int = 256):
        super().__init__()
        if seed is not None:
            torch.manual_seed(get_seed(seed))
        self.image = Projector(image_dim, out_dim, hidden)
        self.text = Projector(text_dim, out_dim, hidden)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.image(x), self.text(y)


def hyperparameters(**overrides) -> dict:
    """The projectors' hyperparameters, a plain dict: nothing is cached from them, unlike a
    ``zoo`` recipe (freeze-align: τ 0.07, AdamW lr 1e-3, decay 0.02, cosine; STRUCTURE: λ 10
    warmed up, τ 0.07, one level). ``layer``: the image layer aligned."""
    r = dict(steps=300, batch_size=64, lr=1e-3, weight_decay=0.02, warmup=30,
             tau=0.07, embed_dim=128, hidden=256, cwcl_centre=False, cwcl_form="paper",
             lam=10.0, lam_warmup=100, structure_tau=0.07, levels=1, divergence="js",
             cwcl_source="text", layer=-1)
    r = _validate.overrides(r, overrides)
    _validate.one_of("cwcl_source", r["cwcl_source"], CWCL_SOURCES)
    _validate.one_of("cwcl_form", r["cwcl_form"], CWCL_FORMS)
    _validate.one_of("divergence", r["divergence"], tuple(structure.DIVERGENCES))
    return r


def _weights(method, r, x_img, x_txt, truth):
    """CWCL's (image->text, text->image) weights for one batch; ``truth`` [attrs(, full_spec)]:
    ``"attributes"`` weighs by attribute overlap, ``"matches"`` by which caption is true."""
    if "cwcl" not in method:
        return None, None
    source, centre, form = r["cwcl_source"], r["cwcl_centre"], r["cwcl_form"]
    if source == "matches":
        w = match_weights(*truth, form)
        return w, w.T.contiguous()
    if source == "attributes":
        w = cwcl_targets(attribute_vectors(truth[0]), centre, form)
        return w, w
    w_img = cwcl_targets(x_img, centre, form) if source in ("image", "own") else None
    w_txt = cwcl_targets(x_txt, centre, form) if source in ("text", "own") else None
    return {"text": (w_txt, w_txt), "image": (w_img, w_img), "own": (w_img, w_txt)}[source]


def pair_indices(n_available: int, n_pairs: int, seed: int | None = None) -> torch.Tensor:
    """The rows ``train_projectors`` draws as its ``n_pairs`` pairs out of ``n_available``
    with ``seed`` ``[n_pairs]`` (the same generator, the same first draw)."""
    if not 2 <= _validate.positive_int("n_pairs", n_pairs) <= n_available:
        raise ValueError(f"n_pairs: got {n_pairs}, "
                         f"expected 2..{n_available} (the pairs in feats)")
    return torch.randperm(n_available, generator=torch.Generator().manual_seed(get_seed(seed)))[:n_pairs]


def untrained_projectors(feats: dict, seed: int | None = None, **overrides):
    """The image and text ``Projector`` exactly as ``train_projectors`` initialises them with
    ``seed`` (before any step): the starting point that every trained pair is compared to."""
    r, seed = hyperparameters(**overrides), get_seed(seed)
    torch.manual_seed(seed)
    img_proj = Projector(feats["image"].shape[-1], r["embed_dim"], r["hidden"])
    txt_proj = Projector(feats["text"].shape[-1], r["embed_dim"], r["hidden"])
    return img_proj.eval(), txt_proj.eval()


def train_projectors(feats: dict, n_pairs: int, method: str = "clip", seed: int | None = None,
                     progress: bool = False, **overrides):
    """Train an image and a text ``Projector`` on ``n_pairs`` pairs drawn (by ``seed``) from
    ``feats`` with ``method`` in ``METHODS``, for ``hyperparameters()["steps"]`` steps whatever
    ``n_pairs`` is (batches of ``min(batch_size, n_pairs)``). Returns both and the history."""
    _validate.one_of("method", method, METHODS)
    r, seed = hyperparameters(**overrides), get_seed(seed)
    pair_indices(len(feats["text"]), n_pairs, seed)                 # checks n_pairs
    g = torch.Generator().manual_seed(seed)
    pool = torch.randperm(len(feats["text"]), generator=g)[:n_pairs]   # = pair_indices(...)
    x_img, x_txt = feats["image"][pool, r["layer"]].float(), feats["text"][pool].float()
    oracle = "cwcl" in method and r["cwcl_source"] in ("attributes", "matches")
    keys = ("attrs", "full_spec")[:1 + (r["cwcl_source"] == "matches")] if oracle else ()
    truth = [feats[k][pool] for k in keys]
    img_proj, txt_proj = untrained_projectors(feats, seed, **overrides)
    img_proj.train(), txt_proj.train()
    log_scale, batch = torch.tensor(math.log(1 / r["tau"])), min(r["batch_size"], n_pairs)
    reg_args = (r["structure_tau"], r["levels"])

    def loss_fn(step):
        idx = torch.randperm(n_pairs, generator=g)[:batch]
        zi, zt = img_proj(x_img[idx]), txt_proj(x_txt[idx])
        w = _weights(method, r, x_img[idx], x_txt[idx], [t[idx] for t in truth])
        out = {"loss": losses.cwcl_loss(zi, zt, log_scale, *w)}
        if "structure" in method:
            reg = (structure.regulariser(x_img[idx], zi, *reg_args, divergence=r["divergence"])
                   + structure.regulariser(x_txt[idx], zt, *reg_args, divergence=r["divergence"])) / 2
            out["loss"], out["structure"] = \
                out["loss"] + structure.weight(step, r["lam"], r["lam_warmup"]) * reg, reg.item()
        return out
    params = train.decay_groups([*img_proj.parameters(), *txt_proj.parameters()], r["weight_decay"])
    history = train.fit(loss_fn, params, range(r["steps"]), steps=r["steps"], lr=r["lr"],
                        warmup=r["warmup"], desc=f"{method}, {n_pairs} pairs", progress=progress)
    return img_proj.eval(), txt_proj.eval(), history


SCORES = ("retrieval", "zero-shot")


@torch.no_grad()
def evaluate(img_proj: Projector, txt_proj: Projector, feats: dict,
             layer: int = -1, scores=SCORES) -> dict[str, float]:
    """``scores``: any of ``SCORES``. ``"retrieval"``: recall@1 both ways on ``feats`` (a
    caption true of several scenes counts for each), ``i2t@1`` and ``t2i@1``, and
    ``recall@1``, their mean; ``"zero-shot"``: accuracy of shape, colour and size from
    held-out-wording prompts (single-object scenes), plus ``zero-shot``, their mean."""
    scores = (scores,) if isinstance(scores, str) else tuple(scores)
    if not scores or any(x not in SCORES for x in scores):
        raise ValueError(f"scores: got {scores!r}, expected some of {SCORES}")
    if "retrieval" in scores and "positives" not in feats:
        raise ValueError("feats: has no 'positives', expected features(split) of a scored split (not train)")
    img, out = F.normalize(img_proj(feats["image"][:, layer].float()), dim=-1), {}
    if "retrieval" in scores:
        txt = F.normalize(in_chunks(txt_proj, feats["text"].float()), dim=-1)
        out = metrics.retrieval(img, txt, ks=(1,), positives=feats["positives"])
        out["recall@1"] = (out["i2t@1"] + out["t2i@1"]) / 2
    if "zero-shot" in scores:
        single = feats["attrs"][:, 1, 0] < 0
        for j, attr in enumerate(ATTRIBUTES):
            cls = txt_proj(class_features(attr))
            out[attr] = metrics.zero_shot_accuracy(img[single], cls, feats["attrs"][single, 0, j])
        out["zero-shot"] = sum(out[a] for a in ATTRIBUTES) / len(ATTRIBUTES)
    return out


def sweep(train_feats: dict, retrieval_feats: dict, zero_shot_feats: dict,
          methods, pair_counts, seeds, progress: bool = True, **overrides) -> list[dict]:
    """Every (method, pairs, seed): train on ``train_feats``, then recall@1 on
    ``retrieval_feats`` and zero-shot accuracy on ``zero_shot_feats``; one row per run."""
    runs = [(m, n, s) for n in pair_counts for m in methods for s in seeds]
    layer, rows = hyperparameters(**overrides)["layer"], []
    for m, n, s in tqdm(runs, desc="runs", disable=not progress):
        ip, tp, _ = train_projectors(train_feats, n, m, seed=s, **overrides)
        rec = evaluate(ip, tp, retrieval_feats, layer, scores="retrieval")
        zs = evaluate(ip, tp, zero_shot_feats, layer, scores="zero-shot")
        rows.append({"method": m, "pairs": n, "seed": s,
                     "i2t@1": rec["i2t@1"], "t2i@1": rec["t2i@1"],
                     **{a: zs[a] for a in (*ATTRIBUTES, "zero-shot")}})
    return rows


@torch.no_grad()
def recall_among(img_proj, txt_proj, feats: dict, rows: torch.Tensor, group: int | None = None,
                 layer: int = -1) -> float:
    """Recall@1 (the mean of both ways) of the scenes ``rows`` ``[R]`` of ``feats`` retrieved
    among each other, in consecutive groups of ``group`` rows (default: all ``R`` at once; a
    last, shorter group is dropped), averaged over groups. A caption true of several scenes of
    a group counts for each (``world.matches``), so it works on the train split too: the pairs
    a projector was trained on against as many it never saw, at the same chance level."""
    if not (callable(img_proj) and callable(txt_proj)):
        raise ValueError("img_proj, txt_proj: expected two callables [B, w] -> [B, d]")
    rows = torch.as_tensor(rows)
    group = len(rows) if group is None else _validate.positive_int("group", group)
    if not 2 <= group <= len(rows):
        raise ValueError(f"group: got {group}, expected 2..{len(rows)} (the rows given)")
    out = []
    for start in range(0, len(rows) - group + 1, group):
        b = rows[start:start + group]
        img = F.normalize(img_proj(feats["image"][b, layer].float()), dim=-1)
        txt = F.normalize(txt_proj(feats["text"][b].float()), dim=-1)
        pos = world.matches(feats["attrs"][b], feats["full_spec"][b])
        r = metrics.retrieval(img, txt, ks=(1,), positives=pos)
        out.append((r["i2t@1"] + r["t2i@1"]) / 2)
    return sum(out) / len(out)
