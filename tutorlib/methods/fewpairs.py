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
CWCL_SOURCES = ("text", "image", "own")
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
             tau=0.07, embed_dim=128, hidden=256, cwcl_centre=False,
             lam=10.0, lam_warmup=100, structure_tau=0.07, levels=1, cwcl_source="text", layer=-1)
    r = _validate.overrides(r, overrides)
    _validate.one_of("cwcl_source", r["cwcl_source"], CWCL_SOURCES)
    return r


def _weights(method, r, x_img, x_txt):
    if "cwcl" not in method:
        return None, None
    source, centre = r["cwcl_source"], r["cwcl_centre"]
    w_img = losses.cwcl_weights(x_img, centre) if source in ("image", "own") else None
    w_txt = losses.cwcl_weights(x_txt, centre) if source in ("text", "own") else None
    return {"text": (w_txt, w_txt), "image": (w_img, w_img), "own": (w_img, w_txt)}[source]


def train_projectors(feats: dict, n_pairs: int, method: str = "clip", seed: int | None = None,
                     progress: bool = False, **overrides):
    """Train an image and a text ``Projector`` on ``n_pairs`` pairs drawn (by ``seed``) from
    ``feats`` with ``method`` in ``METHODS``, for ``hyperparameters()["steps"]`` steps whatever
    ``n_pairs`` is (batches of ``min(batch_size, n_pairs)``). Returns both and the history."""
    _validate.one_of("method", method, METHODS)
    r, seed = hyperparameters(**overrides), get_seed(seed)
    if not 2 <= _validate.positive_int("n_pairs", n_pairs) <= len(feats["text"]):
        raise ValueError(f"n_pairs: got {n_pairs}, "
                         f"expected 2..{len(feats['text'])} (the pairs in feats)")
    g = torch.Generator().manual_seed(seed)
    pool = torch.randperm(len(feats["text"]), generator=g)[:n_pairs]
    x_img, x_txt = feats["image"][pool, r["layer"]].float(), feats["text"][pool].float()
    torch.manual_seed(seed)
    img_proj = Projector(x_img.shape[1], r["embed_dim"], r["hidden"])
    txt_proj = Projector(x_txt.shape[1], r["embed_dim"], r["hidden"])
    log_scale, batch = torch.tensor(math.log(1 / r["tau"])), min(r["batch_size"], n_pairs)

    def loss_fn(step):
        idx = torch.randperm(n_pairs, generator=g)[:batch]
        zi, zt = img_proj(x_img[idx]), txt_proj(x_txt[idx])
        out = {"loss": losses.cwcl_loss(zi, zt, log_scale,
                                        *_weights(method, r, x_img[idx], x_txt[idx]))}
        if "structure" in method:
            reg = (structure.regulariser(x_img[idx], zi, r["structure_tau"], r["levels"])
                   + structure.regulariser(x_txt[idx], zt, r["structure_tau"], r["levels"])) / 2
            out["loss"], out["structure"] = \
                out["loss"] + structure.weight(step, r["lam"], r["lam_warmup"]) * reg, reg.item()
        return out
    params = train.decay_groups([*img_proj.parameters(), *txt_proj.parameters()], r["weight_decay"])
    history = train.fit(loss_fn, params, range(r["steps"]), steps=r["steps"], lr=r["lr"],
                        warmup=r["warmup"], desc=f"{method}, {n_pairs} pairs", progress=progress)
    return img_proj.eval(), txt_proj.eval(), history


@torch.no_grad()
def evaluate(img_proj: Projector, txt_proj: Projector, feats: dict,
             layer: int = -1) -> dict[str, float]:
    """Recall@1 both ways on ``feats`` (a caption true of several scenes counts for each),
    ``i2t@1`` and ``t2i@1``, and ``recall@1``, their mean; zero-shot accuracy of shape, colour
    and size from held-out-wording prompts (single-object scenes), plus ``zero-shot``, their
    mean."""
    img = F.normalize(img_proj(feats["image"][:, layer].float()), dim=-1)
    txt = F.normalize(in_chunks(txt_proj, feats["text"].float()), dim=-1)
    if "positives" not in feats:
        raise ValueError("feats: has no 'positives', "
                         "expected features(split) of a scored split (not train)")
    out = metrics.retrieval(img, txt, ks=(1,), positives=feats["positives"])
    out["recall@1"] = (out["i2t@1"] + out["t2i@1"]) / 2
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
        rec, zs = evaluate(ip, tp, retrieval_feats, layer), evaluate(ip, tp, zero_shot_feats, layer)
        rows.append({"method": m, "pairs": n, "seed": s,
                     "i2t@1": rec["i2t@1"], "t2i@1": rec["t2i@1"],
                     **{a: zs[a] for a in (*ATTRIBUTES, "zero-shot")}})
    return rows


@torch.no_grad()
def neighbourhood_divergence(project_img, project_txt, feats: dict, batch_size: int = 64,
                             batches: int = 10, seed: int = 0, layer: int = -1) -> float:
    """How much of the frozen neighbourhoods two projectors lose: STRUCTURE's ``regulariser``
    R (its defaults) between the frozen features and their projections, image and text sides
    averaged, over ``batches`` random batches of ``batch_size`` rows of ``feats`` (drawn with
    ``seed``; the image at ``layer``), then averaged. 0: every neighbourhood kept."""
    import statistics
    if not (callable(project_img) and callable(project_txt)):
        raise ValueError("project_img, project_txt: expected two callables [B, w] -> [B, d]")
    _validate.positive_int("batch_size", batch_size), _validate.positive_int("batches", batches)
    g, out = torch.Generator().manual_seed(seed), []
    for _ in range(batches):
        b = torch.randperm(len(feats["text"]), generator=g)[:batch_size]
        xi, xt = feats["image"][b, layer].float(), feats["text"][b].float()
        r = structure.regulariser(xi, project_img(xi)) + structure.regulariser(xt, project_txt(xt))
        out.append((r / 2).item())
    return statistics.mean(out)
