"""The course's "pretrained" mini-CLIP: trained once, deterministically, then cached.

Lesson 01 builds every piece of this recipe by hand; lessons 02-04 load the result:

    model = pretrained.mini_clip()           # from the cache, or trained (about a minute)
    model, history = pretrained.train_mini_clip(steps=100, loss="plain", temperature=0.01)

The recipe (``quick``; ``full`` trains longer on a larger world with wider towers):
batches of 64 scenes, each with its full caption or a partial one ("a red object");
a CLIP loss whose soft targets count every caption a scene satisfies as a positive;
AdamW with the text tower at 0.1x the image tower's learning rate; a learnable
temperature clamped to [0, ln 100] and excluded from weight decay.
"""
from __future__ import annotations

import math

import torch

from . import _validate, cache, losses, metrics, models, train, world
from ._core import device, get_seed, pick

VERSION = 2          # bump when the recipe changes: old cache entries are then ignored


def training_data(split: str = "train", n: int | None = None, seed: int = 0) -> dict:
    """Everything a CLIP batch needs, as tensors: ``image`` uint8 ``[N, 3, H, W]``, token
    ids of the full and partial captions ``[N, L]``, their specs ``[N, 9]`` and the scene
    attributes ``[N, 2, 4]`` (for ``world.matches``), and the ``scenes`` themselves (to
    make more captions of *these* images, e.g. ``world.swap_captions``). ``seed`` is the
    world's seed, fixed at 0 so that the course's models share one world whatever
    ``TUTORLIB_SEED`` is."""
    ds = world.load_world(split, n=n, modalities=("image", "text"), seed=seed)
    t = world.tensors(ds, ["image", "caption", "partial", "caption_spec", "partial_spec"])
    tok = world.Tokenizer()
    scenes = world.scenes_of(ds)
    return {"image": t["image"], "full_ids": tok(t["caption"]), "partial_ids": tok(t["partial"]),
            "full_spec": t["caption_spec"], "partial_spec": t["partial_spec"],
            "attrs": world.scene_attributes(scenes), "scenes": scenes,
            "caption": t["caption"], "partial": t["partial"]}


def clip_batches(data: dict, batch_size: int = 64, partial_frac: float = 0.5, seed: int = 0):
    """A ``batches(step)`` function for ``train.fit``: random scenes, each with its full
    caption or (with probability ``partial_frac``) its partial caption, and the soft
    target matrix ``[B, B]``: ``targets[i, j]`` is True when scene i satisfies caption j."""
    _validate.positive_int("batch_size", batch_size)
    if not 0.0 <= partial_frac <= 1.0:
        raise ValueError(f"partial_frac: got {partial_frac!r}, expected a number in [0, 1]")
    g = torch.Generator().manual_seed(get_seed(seed))
    n = len(data["image"])

    def batches(step):
        idx = torch.randint(n, (batch_size,), generator=g)
        part = torch.rand(batch_size, generator=g) < partial_frac
        ids = torch.where(part[:, None], data["partial_ids"][idx], data["full_ids"][idx])
        spec = torch.where(part[:, None], data["partial_spec"][idx], data["full_spec"][idx])
        return world.images_float(data["image"][idx]), ids, world.matches(data["attrs"][idx], spec)
    return batches


def _to(batch, dev):
    return tuple(t.to(dev, non_blocking=True) for t in batch)


def recipe(**overrides) -> dict:
    """The hyperparameters of the course mini-CLIP in the current profile. The seed
    defaults to ``TUTORLIB_SEED``, so a whole course reruns under another seed."""
    r = dict(steps=pick(800, 4000), batch_size=pick(64, 128), lr=1e-3, text_lr_ratio=0.1,
             weight_decay=0.1, warmup=50, partial_frac=0.5, loss="soft", temperature=None,
             embed_dim=pick(128, 256), depth=pick(2, 4), seed=None)
    unknown = set(overrides) - set(r)
    if unknown:
        raise ValueError(f"overrides: got unknown names {sorted(unknown)}, expected some of {sorted(r)}")
    r.update(overrides)
    r["seed"] = get_seed(r["seed"])          # None: TUTORLIB_SEED (default 0)
    return r


def train_mini_clip(data: dict | None = None, progress: bool = True, **overrides):
    """Train a mini-CLIP from scratch with ``recipe(**overrides)``; return ``(model, history)``.

    ``loss="soft"`` uses the soft targets of ``clip_batches``; ``loss="plain"`` the
    diagonal InfoNCE of the original CLIP with full captions only. ``temperature=t``
    fixes the temperature at ``t`` (logit_scale = ln 1/t, not learned). Training runs on
    ``tutorlib.device()`` (a GPU when there is one); the model comes back on the CPU.
    """
    r = recipe(**overrides)
    _validate.one_of("loss", r["loss"], ("soft", "plain"))
    torch.manual_seed(get_seed(r["seed"]))
    data = training_data() if data is None else data
    model = models.mini_clip(embed_dim=r["embed_dim"], depth=r["depth"])
    if r["temperature"] is not None:
        t = _validate.positive_number("temperature", r["temperature"])
        model.logit_scale.data.fill_(math.log(1 / t))
        model.logit_scale.requires_grad_(False)
    plain = r["loss"] == "plain"
    batches = clip_batches(data, r["batch_size"], 0.0 if plain else r["partial_frac"], r["seed"])

    dev = device()
    model.to(dev)

    def loss_fn(batch):
        images, ids, targets = _to(batch, dev)
        img, txt, scale = model(images, ids)
        loss = losses.clip_loss(img, txt, scale, targets=None if plain else targets)
        return {"loss": loss, "logit_scale": scale.item()}

    groups = [{"params": model.image_tower.parameters(), "lr": r["lr"]},
              {"params": model.text_tower.parameters(), "lr": r["lr"] * r["text_lr_ratio"]}]
    if model.logit_scale.requires_grad:
        groups.append({"params": [model.logit_scale], "lr": r["lr"], "weight_decay": 0.0})
    history = train.fit(loss_fn, groups, batches, steps=r["steps"], lr=r["lr"],
                        weight_decay=r["weight_decay"], warmup=r["warmup"],
                        after_step=lambda step: losses.clamp_logit_scale_(model.logit_scale),
                        desc=f"mini-CLIP ({r['loss']} loss)", progress=progress)
    return model.cpu().eval(), history


def mini_clip(retrain: bool = False, progress: bool = True, **overrides):
    """The cached course mini-CLIP (``recipe(**overrides)``), trained on first use.

    Returns the model in eval mode with ``model.history`` (the training history).
    ``retrain=True`` trains again and replaces the cache entry. A damaged entry is
    rebuilt, never trusted.
    """
    r = recipe(**overrides)
    name = f"mini-clip-{cache.key(r, VERSION, world.world_config('train', pick(20000, 100000), ('image', 'text'), 0))}.safetensors"
    with cache.lock(name):
        stored = None if retrain else cache.load_tensors(name)
        model = models.mini_clip(embed_dim=r["embed_dim"], depth=r["depth"])
        if stored is not None:
            try:
                model.load_state_dict({k[6:]: v for k, v in stored.items() if k.startswith("model.")})
                model.history = {k[8:]: v.tolist() for k, v in stored.items() if k.startswith("history.")}
                return model.eval()
            except (RuntimeError, KeyError):
                pass                                    # stale or damaged: rebuild
        model, history = train_mini_clip(progress=progress, **overrides)
        tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
        tensors.update({f"history.{k}": torch.tensor(v, dtype=torch.float64) for k, v in history.items()})
        cache.save_tensors(name, tensors)
        model.history = history
        return model.eval()


def _in_chunks(fn, items, size: int = 1000) -> torch.Tensor:
    """``fn`` over consecutive chunks of ``items`` (a tensor or list), concatenated."""
    return torch.cat([fn(items[lo:lo + size]) for lo in range(0, len(items), size)])


def _encode_images(model, images: torch.Tensor) -> torch.Tensor:
    return _in_chunks(lambda b: model.encode_image(world.images_float(b)), images)


@torch.no_grad()
def embed(model, data: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Image and full-caption embeddings ``[N, d]`` of ``training_data(...)``-style data."""
    model.eval()
    return _encode_images(model, data["image"]), _in_chunks(model.encode_text, data["full_ids"])


@torch.no_grad()
def evaluate(model, data: dict, held_out: bool = False, encode_text=None) -> dict[str, float]:
    """Retrieval recall@1/5 both ways (a caption true of several scenes counts for each,
    so identical captions are ties, not errors), its chance level, and zero-shot accuracy
    of shape, colour, size and position on the single-object scenes.

    ``encode_text(list_of_str) -> [M, d]`` replaces the model's own text tower (e.g. a
    MiniLM-backed head); ``held_out`` words the prompts with held-out synonyms."""
    tok = world.Tokenizer()
    encode_text = encode_text or (lambda texts: model.encode_text(tok(texts)))
    img = _encode_images(model, data["image"])
    txt = _in_chunks(encode_text, data["caption"])
    positives = world.matches(data["attrs"], data["full_spec"])
    out = metrics.retrieval(img, txt, ks=(1, 5), positives=positives)
    out["chance@1"] = positives.float().sum(1).mean().item() / len(positives)
    single = data["attrs"][:, 1, 0] < 0
    for j, attr in enumerate(("shape", "colour", "size", "position")):
        cls = encode_text(world.prompts(attr, held_out=held_out))
        out[attr] = metrics.zero_shot_accuracy(img[single], cls, data["attrs"][single, 0, j])
    out["gap"] = metrics.modality_gap(img, txt)
    return out


def _keep_tokens(h: torch.Tensor, keep: float, g: torch.Generator) -> torch.Tensor:
    """A random view of token states ``[B, 1 + P, w]``: the class token and a random
    ``keep`` fraction of the P patch tokens of each row."""
    B, P = h.shape[0], h.shape[1] - 1
    k = max(1, round(keep * P))
    idx = torch.rand(B, P, generator=g).argsort(1)[:, :k].to(h.device) + 1
    return torch.cat([h[:, :1], h.gather(1, idx[..., None].expand(-1, -1, h.shape[2]))], 1)


def finetune(model, data: dict, objective=None, *, steps: int, batch_size: int = 128,
             lr: float = 2e-4, seed: int | None = None, pool: int | None = None,
             negative_ids: torch.Tensor | None = None, negative_valid: torch.Tensor | None = None,
             image_blocks: int = 1, text_blocks: int = 1, intra_weight: float = 0.0,
             keep_patches: float = 0.5, progress: bool = True, desc: str = "fine-tuning"):
    """Fine-tune a copy of ``model``: the last ``image_blocks`` / ``text_blocks`` blocks
    (0: none), final LayerNorm and projection of each tower, and the logit scale (the earlier
    blocks and the embeddings stay frozen, so their outputs are computed once for a pool
    of ``pool`` training scenes: fast on a CPU).

    ``objective(image_emb, text_emb, logit_scale, negatives)`` returns the loss
    (default: ``losses.clip_loss``); ``negatives`` are the embeddings ``[K, d]`` of the
    batch's extra captions ``negative_ids[idx][negative_valid[idx]]`` when given, else
    ``None``. Training runs on ``tutorlib.device()``; returns ``(model, history)`` with
    the model on the CPU.

    ``intra_weight > 0`` adds an image-image term, as in SLIP (Mu et al. 2022): two views of
    each image, each keeping a random ``keep_patches`` fraction of its patch tokens (plus
    the class token) at the first trained block, contrasted with the symmetric InfoNCE at
    temperature 0.1: ``loss = objective(...) + intra_weight * clip_loss(view1, view2, ln 10)``.
    """
    import copy
    _validate.positive_int("steps", steps)
    _validate.positive_int("batch_size", batch_size)
    seed = get_seed(seed)
    _validate.non_negative_number("intra_weight", intra_weight)
    if not 0.0 < float(keep_patches) < 1.0:
        raise ValueError(f"keep_patches: got {keep_patches!r}, expected a fraction in (0, 1)")
    if intra_weight and image_blocks == 0:
        raise ValueError("intra_weight: needs image_blocks >= 1 (a view drops tokens before a trained block)")
    objective = objective or (lambda i, t, s, neg: losses.clip_loss(i, t, s))
    for name, blocks, tower in (("image_blocks", image_blocks, model.image_tower),
                                ("text_blocks", text_blocks, model.text_tower)):
        depth = len(tower.encoder.blocks)
        if not isinstance(blocks, int) or not 0 <= blocks <= depth:
            raise ValueError(f"{name}: got {blocks!r}, expected an integer from 0 to the tower's depth {depth}")
    torch.manual_seed(seed)
    dev = device()
    model = copy.deepcopy(model).eval().to(dev)                # checked first, then copied
    img_t, txt_t = model.image_tower, model.text_tower
    si = len(img_t.encoder.blocks) - image_blocks             # first trained block
    st = len(txt_t.encoder.blocks) - text_blocks
    n = min(len(data["image"]), pool or pick(8192, 50000))
    with torch.no_grad():                              # frozen: computed once
        h_img = _in_chunks(lambda b: img_t.hidden(world.images_float(b.to(dev)), si), data["image"][:n])
        if image_blocks == 0:
            h_img = h_img[:, :1]                       # no block left: only CLS is read
        h_txt, m_txt = txt_t.hidden(data["full_ids"][:n].to(dev), st)
        if negative_ids is not None:
            h_neg, m_neg = txt_t.hidden(negative_ids[:n].to(dev), st)
            negative_valid = negative_valid.to(dev)
    for p in model.parameters():
        p.requires_grad_(False)
    params = [p for tower, s in ((img_t, si), (txt_t, st))
              for mod in (*tower.encoder.blocks[s:], tower.encoder.ln, tower.proj) for p in mod.parameters()]
    for p in params:
        p.requires_grad_(True)
    model.logit_scale.requires_grad_(True)
    g = torch.Generator().manual_seed(seed)

    def loss_fn(idx):
        idx = idx.to(dev)
        i = img_t.from_hidden(h_img[idx], si)
        t = txt_t.from_hidden(h_txt[idx], m_txt[idx], st)
        neg = None
        if negative_ids is not None:
            keep = idx[negative_valid[idx]]
            neg = txt_t.from_hidden(h_neg[keep], m_neg[keep], st)
        loss = objective(i, t, model.logit_scale, neg)
        if intra_weight:
            views = [img_t.from_hidden(_keep_tokens(h_img[idx], keep_patches, g), si) for _ in range(2)]
            loss = loss + intra_weight * losses.clip_loss(*views, math.log(10.0))
        return loss

    history = train.fit(loss_fn, [{"params": params}, {"params": [model.logit_scale], "weight_decay": 0.0}],
                        lambda step: torch.randint(n, (batch_size,), generator=g), steps=steps, lr=lr,
                        weight_decay=0.1, warmup=max(1, steps // 10),
                        after_step=lambda step: losses.clamp_logit_scale_(model.logit_scale),
                        desc=desc, progress=progress)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.cpu().eval(), history
