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

from ..core import _validate, cache
from ..objectives import losses, structure
from ..evaluation import metrics
from ..zoo import pretrained, selfsup
from ..training import stacked, train
from .. import world
from ..core.runtime import get_seed
from ..zoo.minilm import load_minilm
from ..core.ops import in_chunks
from ..models.heads import mlp
from ..objectives.cwcl import (CWCL_FORMS, CWCL_SOURCES, attribute_vectors, batch_weights,
                                cwcl_targets, match_weights, optimum_margin)

METHODS = ("clip", "cwcl", "structure", "cwcl+structure")
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
    name = f"fewpairs-image-{cache.key(selfsup.recipe().key, pretrained.training_config(split, n))}.safetensors"
    image = cache.cached_tensors(name, lambda: {"image": selfsup.layer_features(tower, data["image"])})["image"]
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
             tau=0.07, embed_dim=128, hidden=256, cwcl_centre=False, cwcl_form="paper",
             lam=10.0, lam_warmup=100, structure_tau=0.07, levels=1, divergence="js",
             cwcl_source="text", layer=-1)
    r = _validate.overrides(r, overrides)
    _validate.one_of("cwcl_source", r["cwcl_source"], CWCL_SOURCES)
    _validate.one_of("cwcl_form", r["cwcl_form"], CWCL_FORMS)
    _validate.one_of("divergence", r["divergence"], tuple(structure.DIVERGENCES))
    return r


def pair_indices(n_available: int, n_pairs: int, seed: int | None = None) -> torch.Tensor:
    """The rows ``train_projectors`` draws as its ``n_pairs`` pairs out of ``n_available``
    with ``seed`` ``[n_pairs]`` (the same generator, the same first draw)."""
    if not 2 <= _validate.positive_int("n_pairs", n_pairs) <= n_available:
        raise ValueError(f"n_pairs: got {n_pairs}, expected 2..{n_available} (the pairs in feats)")
    return torch.randperm(n_available, generator=torch.Generator().manual_seed(get_seed(seed)))[:n_pairs]


def untrained_projectors(feats: dict, seed: int | None = None, **overrides):
    """The image and text ``Projector`` exactly as ``train_projectors`` initialises them with
    ``seed`` (before any step): the starting point that every trained pair is compared to."""
    r, seed = hyperparameters(**overrides), get_seed(seed)
    torch.manual_seed(seed)
    return tuple(Projector(feats[k].shape[-1], r["embed_dim"], r["hidden"]).eval() for k in ("image", "text"))


def train_projectors(feats: dict, n_pairs: int, method: str = "clip", seed: int | None = None,
                     progress: bool = False, **overrides):
    """Train an image and a text ``Projector`` on ``n_pairs`` pairs drawn (by ``seed``) from
    ``feats`` with ``method`` in ``METHODS``, for ``hyperparameters()["steps"]`` steps whatever
    ``n_pairs`` is (batches of ``min(batch_size, n_pairs)``). Returns both and the history."""
    return train_runs(feats, [dict(n_pairs=n_pairs, method=method, seed=seed, **overrides)], progress)[0]


# lesson 08's sweep on one core: 8 at once trained fastest; 12 no faster, 16 slower (the stacked
# weights and AdamW's state outgrow the core's cache)
RUNS_AT_ONCE = 8


def _prepare(feats: dict, run: dict) -> dict:
    """One run's settings, its seeded generator, its drawn pairs and its untrained projectors."""
    if not isinstance(run, dict) or "n_pairs" not in run:
        raise ValueError(f"runs: got an item {run!r}, expected dicts with 'n_pairs' (and 'method', "
                         "'seed', any hyperparameters() override)")
    run = {"method": "clip", "seed": None, **run}
    n, method, seed = run.pop("n_pairs"), run.pop("method"), get_seed(run.pop("seed"))
    _validate.one_of("method", method, METHODS)
    r = hyperparameters(**run)
    pair_indices(len(feats["text"]), n, seed)                       # checks n_pairs
    g = torch.Generator().manual_seed(seed)
    pool = torch.randperm(len(feats["text"]), generator=g)[:n]      # = pair_indices(...)
    oracle = "cwcl" in method and r["cwcl_source"] in ("attributes", "matches")
    keys = ("attrs", "full_spec")[:1 + (r["cwcl_source"] == "matches")] if oracle else ()
    return {"r": r, "method": method, "n": n, "seed": seed, "g": g, "batch": min(r["batch_size"], n),
            "log_scale": torch.tensor(math.log(1 / r["tau"])),
            "x_img": feats["image"][pool, r["layer"]].float(), "x_txt": feats["text"][pool].float(),
            "truth": [feats[k][pool] for k in keys], "proj": untrained_projectors(feats, seed, **run)}


def _run_loss(run: dict, zi, zt, idx, step: int) -> dict:
    """One run's loss on its batch ``idx``: CLIP's or CWCL's, plus STRUCTURE's term."""
    r, method, x_img, x_txt = run["r"], run["method"], run["x_img"][idx], run["x_txt"][idx]
    w = ((None, None) if "cwcl" not in method else
         batch_weights(r["cwcl_source"], x_img, x_txt, [t[idx] for t in run["truth"]], r["cwcl_centre"], r["cwcl_form"]))
    out = {"loss": losses.cwcl_loss(zi, zt, run["log_scale"], *w)}
    if "structure" in method:
        reg_args = dict(tau=r["structure_tau"], levels=r["levels"], divergence=r["divergence"])
        reg = (structure.regulariser(x_img, zi, **reg_args) + structure.regulariser(x_txt, zt, **reg_args)) / 2
        out["loss"], out["structure"] = out["loss"] + structure.weight(step, r["lam"], r["lam_warmup"]) * reg, reg.detach()
    return out


def _train_together(runs: list[dict], progress: bool) -> list[tuple]:
    """Runs of one shape trained as one ``Stacked`` run: their losses summed, one AdamW."""
    img, txt = (stacked.Stacked([run["proj"][side] for run in runs]).train() for side in (0, 1))
    r = runs[0]["r"]

    def loss_fn(step):
        idx = [torch.randperm(run["n"], generator=run["g"])[:run["batch"]] for run in runs]
        zi = img(torch.stack([run["x_img"][i] for run, i in zip(runs, idx)]))
        zt = txt(torch.stack([run["x_txt"][i] for run, i in zip(runs, idx)]))
        outs = [_run_loss(run, a, b, i, step) for run, a, b, i in zip(runs, zi.unbind(), zt.unbind(), idx)]
        for run, o in zip(runs, outs):          # name the run whose loss broke, not only the sum
            if not torch.isfinite(o["loss"]):
                raise FloatingPointError(f"the {run['method']} run with {run['n']} pairs and seed {run['seed']}: "
                                         f"its loss became {o['loss'].item()} at step {step}; try a lower lr")
        logs = {f"{name} {k}": v.detach() for k, o in enumerate(outs) for name, v in o.items()}
        return {**logs, "loss": sum(o["loss"] for o in outs)}
    desc = (f"{len(runs)} runs at once (their losses summed): " if len(runs) > 1 else "") + \
        ", ".join(sorted({run["method"] for run in runs}))
    h = train.fit(loss_fn, img.param_groups(r["weight_decay"]) + txt.param_groups(r["weight_decay"]),
                  range(r["steps"]), steps=r["steps"], lr=r["lr"], warmup=r["warmup"], desc=desc, progress=progress)
    out = []
    for k, (i, t) in enumerate(zip(img.unstack(), txt.unstack())):
        history = {name: h[f"{name} {k}"] for name in ("loss", "structure") if f"{name} {k}" in h}
        out.append((i.eval(), t.eval(), {**history, "lr": h["lr"], "time": h["time"]}))   # time: the chunk's
    return out


def train_runs(feats: dict, runs, progress: bool = False) -> list[tuple]:
    """``train_projectors`` for every run in ``runs`` (dicts of its arguments: ``n_pairs``,
    ``method``, ``seed`` and any ``hyperparameters()`` override), the same weights to the last
    bit, in less time: runs whose projectors, batch size and schedule agree are trained
    ``RUNS_AT_ONCE`` at a time as one ``training.stacked.Stacked`` run. Returns one
    ``(img_proj, txt_proj, history)`` per run, in order; a history's ``time`` is the wall time
    of the runs trained with it."""
    if not isinstance(runs, (list, tuple)) or not runs:
        raise ValueError(f"runs: got {runs!r}, expected a non-empty list of dicts")
    prepared = [_prepare(feats, run) for run in runs]
    shape = lambda p: (p["batch"], *(p["r"][k] for k in ("steps", "lr", "weight_decay", "warmup", "embed_dim", "hidden")))
    groups, out = {}, [None] * len(prepared)
    for i, p in enumerate(prepared):
        groups.setdefault(shape(p), []).append(i)
    for members in groups.values():
        n_chunks = -(-len(members) // RUNS_AT_ONCE)
        for chunk in (members[c::n_chunks] for c in range(n_chunks)):
            for i, res in zip(chunk, _train_together([prepared[i] for i in chunk], progress)):
                out[i] = res
    return out


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
    """Every (method, pairs, seed): train on ``train_feats`` (``train_runs``), then recall@1 on
    ``retrieval_feats`` and zero-shot accuracy on ``zero_shot_feats``; one row per run.
    ``methods``: names in ``METHODS``, or ``{label: (method, its own overrides)}``."""
    names = list(methods) if not isinstance(methods, (str, dict)) else None
    named = dict(methods) if isinstance(methods, dict) else {m: (m, {}) for m in names or ()}
    if (not named or (names is not None and len(set(names)) < len(names))
            or any(not (isinstance(v, tuple) and len(v) == 2 and v[0] in METHODS and isinstance(v[1], dict))
                   for v in named.values())):
        raise ValueError(f"methods: got {methods!r}, expected distinct names in {METHODS} "
                         "or {label: (method, overrides)}")
    for name, v in (("pair_counts", pair_counts), ("seeds", seeds)):
        if isinstance(v, (str, int)) or not list(v):
            raise ValueError(f"{name}: got {v!r}, expected a non-empty list")
    runs = [(m, n, s) for n in pair_counts for m in named for s in seeds]
    settings = {m: {**overrides, **named[m][1]} for m in named}
    trained = train_runs(train_feats, [dict(n_pairs=n, method=named[m][0], seed=s, **settings[m]) for m, n, s in runs],
                         progress)
    layers, rows = {m: hyperparameters(**settings[m])["layer"] for m in named}, []   # each label's own
    for (m, n, s), (ip, tp, _) in zip(runs, trained):
        layer = layers[m]
        rec = evaluate(ip, tp, retrieval_feats, layer, scores="retrieval")
        zs = evaluate(ip, tp, zero_shot_feats, layer, scores="zero-shot")
        rows.append({"method": m, "pairs": n, "seed": s, "i2t@1": rec["i2t@1"], "t2i@1": rec["t2i@1"],
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
