"""Progressive alignment of new modalities: OneEncoder's Universal Projection (Faye et al. 2024).

Frozen unimodal backbones give token outputs ``[N, L, w_m]`` for each modality m.

* A **projection head** (stage 1) or an **alignment layer** (later stages) maps every
  token to the shared width d:  h = LayerNorm(Dropout(W2 GELU(W1 x)))          [N, L, d]
* A **modality token**: a learnable vector e_m through a small MLP, t = MLP(e_m)   [1, d]
* The **Universal Projection** (UP), one shared transformer layer with a residual:
  z = h + t;  u = z + Layer(LayerNorm(z));  y = normalise(mean_tokens(u))           [N, d]

Stage 1 trains the image and text heads, their modality tokens and the UP on image-text
pairs. A later stage (``add_modality(..., freeze=True)``, then ``fit_pairs``) freezes all of
that and trains only a new alignment layer and token against a frozen *anchor* (image or text):

    model = OneEncoder(dim=128).add_modality("image", 64).add_modality("text", 384)
    fit_pairs(model, ("image", img_feats), ("text", txt_feats), steps=600)      # stage 1
    model.add_modality("audio", 64, freeze=True)                                # stage 2
    fit_pairs(model, ("audio", aud_feats), ("image", img_feats), steps=300)

Official code: github.com/b-faye/OneEncoder at its head (91edf3d), "contrastive learning/":
``text-image/addition/text_image.py`` (stage 1: d 256, one layer, 4 heads, a 3-d token through
3 -> 64 -> 128 -> d, batch 64), ``audio-image/addition/audio_image.py`` (audio anchored on
images), ``text-audio/addition/text_audio.py`` (on text). Where this differs, on purpose: a
token MLP per modality (stage 1 at the head shares one); feed-forward 4d (the head: 2048);
the padding masked in the layer and skipped by the mean; frozen paths in eval mode;
warm-up and cosine (the head: ReduceLROnPlateau); the UP may be left trainable in a later
stage, as an ablation. Lesson 05's paper card lists the rest.
"""
from __future__ import annotations

import torch
from torch import nn

from ..core import _validate
from ..objectives import losses
from ..training import train
# F401: masked_mean is not used here, it is the lesson's reference
from ..core.ops import check_mask, in_chunks, masked_mean, mean_over_tokens   # noqa: F401
from ..core.runtime import device, get_seed

LOGIT_SCALE = 2.5          # ln of the fixed scale e^2.5 ~ 12.2 of the official code


class ProjectionHead(nn.Module):
    """h = LayerNorm(Dropout(W2 GELU(W1 x))) on every token: ``[N, L, in_dim]`` -> ``[N, L, dim]``."""

    def __init__(self, in_dim: int, dim: int, dropout: float = 0.1):
        super().__init__()
        self.in_dim, self.dim = _validate.positive_int("in_dim", in_dim), _validate.positive_int("dim", dim)
        self.net = nn.Sequential(nn.Linear(in_dim, dim), nn.GELU(), nn.Linear(dim, dim),
                                 nn.Dropout(dropout), nn.LayerNorm(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class AlignmentLayer(ProjectionHead):
    """A later stage's head: a projection head's shape; with its token, all that stage trains."""


class ModalityToken(nn.Module):
    """``forward()`` -> ``[1, dim]``: a learnable ``[1, token_dim]`` vector, N(0, s^2), s ~ U(0.1, 0.6),
    through Linear-ReLU-Linear-ReLU-Linear-LayerNorm (3 -> 64 -> 128 -> dim, as OneEncoder at HEAD)."""

    def __init__(self, dim: int, token_dim: int = 3, hidden: tuple[int, int] = (64, 128)):
        super().__init__()
        _validate.positive_int("dim", dim), _validate.positive_int("token_dim", token_dim)
        if not (isinstance(hidden, (tuple, list)) and len(hidden) == 2
                and all(type(h) is int and h > 0 for h in hidden)):
            raise ValueError(f"hidden: got {hidden!r}, expected two layer widths such as (64, 128)")
        self.token = nn.Parameter((0.1 + 0.5 * torch.rand(()).item()) * torch.randn(1, token_dim))
        self.mlp = nn.Sequential(nn.Linear(token_dim, hidden[0]), nn.ReLU(),
                                 nn.Linear(hidden[0], hidden[1]), nn.ReLU(),
                                 nn.Linear(hidden[1], dim), nn.LayerNorm(dim))

    def forward(self) -> torch.Tensor:
        return self.mlp(self.token)


class UniversalProjection(nn.Module):
    """z = h + m; u = z + Layer(LayerNorm(z)); y = normalise(masked_mean(u)): ``forward(h [N, L, dim],
    m [1, dim], mask [N, L] or None)`` -> y ``[N, dim]`` (and u if ``return_tokens``). Layer: one
    batch-first, post-norm ``nn.TransformerEncoderLayer`` (feed-forward 4 dim) with residuals of its
    own; OneEncoder's outer residual carries the raw z, as the layer sees only LN(z)."""

    def __init__(self, dim: int, attn_heads: int = 4, dropout: float = 0.1):
        super().__init__()
        _validate.positive_int("dim", dim), _validate.positive_int("attn_heads", attn_heads)
        if dim % attn_heads:
            raise ValueError(f"attn_heads: got {attn_heads}, expected a divisor of dim={dim}")
        self.dim, self.norm = dim, nn.LayerNorm(dim)
        self.layer = nn.TransformerEncoderLayer(dim, attn_heads, 4 * dim, dropout, batch_first=True)

    def forward(self, h: torch.Tensor, m: torch.Tensor, mask: torch.Tensor | None = None,
                return_tokens: bool = False):
        check_mask(mask, h.shape[:2])           # before the layer uses it
        z = h + m                               # the modality token on every token
        # outer residual
        u = z + self.layer(self.norm(z), src_key_padding_mask=None if mask is None else ~mask)
        y = nn.functional.normalize(mean_over_tokens(u, mask), dim=-1)
        return (y, u) if return_tokens else y


class OneEncoder(nn.Module):
    """A head (``heads``) and a token (``modality_tokens``) per modality around one UP (``up``).
    ``add_modality(name, in_dim, freeze=True)`` freezes everything already there first and adds
    an ``AlignmentLayer`` (a later stage: train it before adding the next). ``encode(name,
    tokens [N, L, in_dim], mask)`` -> ``[N, dim]`` unit-norm embeddings."""

    def __init__(self, dim: int = 128, attn_heads: int = 4, token_dim: int = 3, dropout: float = 0.1):
        super().__init__()
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ValueError(f"dropout: got {dropout!r}, expected a probability in [0, 1)")
        self.dim, self.token_dim = (_validate.positive_int("dim", dim),
                                    _validate.positive_int("token_dim", token_dim))
        self.dropout = float(dropout)
        self.heads = nn.ModuleDict()
        self.modality_tokens = nn.ModuleDict()
        self.up = UniversalProjection(dim, attn_heads, dropout)

    @property
    def modalities(self) -> list[str]:
        return list(self.heads)

    def add_modality(self, name: str, in_dim: int, freeze: bool = False) -> "OneEncoder":
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"name: got {name!r}, expected a modality name such as 'audio'")
        if name in self.heads:
            raise ValueError(f"name: got {name!r}, expected a new modality (have {self.modalities})")
        _validate.positive_int("in_dim", in_dim)
        if freeze and not self.heads:
            raise ValueError("freeze: got True for the first modality, expected False (freezing "
                             "would freeze an untrained Universal Projection)")
        if freeze:
            self.requires_grad_(False)           # everything already there (a later stage)
        dev = self.up.norm.weight.device
        self.heads[name] = (AlignmentLayer if freeze
                            else ProjectionHead)(in_dim, self.dim, self.dropout).to(dev)
        self.modality_tokens[name] = ModalityToken(self.dim, self.token_dim).to(dev)
        return self

    def _check(self, name, tokens, mask):
        _validate.one_of("modality", name, self.modalities)
        _validate.tensor("tokens", tokens, 3, finite=False)
        if tokens.shape[-1] != self.heads[name].in_dim:
            raise ValueError(f"tokens: got width {tokens.shape[-1]} for modality {name!r}, "
                             f"expected {self.heads[name].in_dim} (the width its head was built for)")
        dev = self.up.norm.weight.device                 # the mask itself is checked by self.up
        for arg, t in (("tokens", tokens), ("mask", mask)):
            if isinstance(t, torch.Tensor) and t.device != dev:
                raise ValueError(f"{arg}: got a tensor on {t.device}, "
                                 f"expected it on the model's device {dev}")

    def encode(self, name: str, tokens: torch.Tensor, mask: torch.Tensor | None = None,
               return_tokens: bool = False):
        self._check(name, tokens, mask)
        return self.up(self.heads[name](tokens.float()), self.modality_tokens[name](), mask, return_tokens)


def _features(name: str, feats) -> tuple[torch.Tensor, torch.Tensor | None]:
    if not isinstance(feats, dict) or "tokens" not in feats:
        raise ValueError(f"{name}: got {type(feats).__name__}, expected a dict with 'tokens' "
                         "[N, L, w] (and 'mask' [N, L] or None), as unimodal.token_features gives")
    return feats["tokens"], feats.get("mask")


@torch.no_grad()
def embed(model: OneEncoder, name: str, feats: dict, batch_size: int = 1024) -> torch.Tensor:
    """Unit-norm embeddings ``[N, dim]`` of all of ``feats`` through modality ``name``, in
    eval mode (no dropout), in batches, on the model's device; returned on the CPU."""
    if not isinstance(model, OneEncoder):
        raise ValueError(f"model: got {type(model).__name__}, expected a progressive.OneEncoder")
    tokens, mask = _features("feats", feats)
    _validate.positive_int("batch_size", batch_size)
    if len(tokens) == 0:
        raise ValueError("feats: got 0 rows, expected at least one item to embed")
    was_training, dev = model.training, model.up.norm.weight.device
    model.eval()
    out = in_chunks(lambda rows: model.encode(name, tokens[rows].to(dev),
                                              None if mask is None else mask[rows].to(dev)).cpu(),
                    torch.arange(len(tokens)), batch_size)
    model.train(was_training)
    return out


def _path_trains(model: OneEncoder, name: str) -> bool:
    """Whether modality ``name`` has a trainable head or modality token."""
    return any(p.requires_grad for m in (model.heads[name], model.modality_tokens[name])
               for p in m.parameters())


def _check_pairs(model, a, b, steps, batch_size, lr, weight_decay, warmup, after_step):
    """Validate ``fit_pairs``'s arguments; return both sides as (name, (tokens, mask))."""
    if not isinstance(model, OneEncoder):
        raise ValueError(f"model: got {type(model).__name__}, expected a progressive.OneEncoder")
    for arg, pair in (("a", a), ("b", b)):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and isinstance(pair[0], str)):
            raise ValueError(f"{arg}: got {type(pair).__name__}, expected a (modality name, features) pair")
        _validate.one_of("modality", pair[0], model.modalities)
    fa, fb = _features("a", a[1]), _features("b", b[1])
    _validate.same_rows("a's tokens", fa[0], "b's tokens", fb[0])
    _validate.positive_int("steps", steps), _validate.positive_int("batch_size", batch_size)
    _validate.positive_number("lr", lr), _validate.non_negative_number("weight_decay", weight_decay)
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup: got {warmup!r}, expected a number of steps >= 0")
    if after_step is not None and not callable(after_step):
        raise ValueError(f"after_step: got {type(after_step).__name__}, "
                         "expected a callable step -> None (or None)")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("model: got no trainable parameters, expected a new modality to train "
                         "(add one with add_modality)")
    if not (_path_trains(model, a[0]) or _path_trains(model, b[0])):
        trainable = [n for n in model.modalities if _path_trains(model, n)]
        raise ValueError(f"a, b: got modalities {a[0]!r} and {b[0]!r}, both frozen, "
                         f"expected at least one with trainable parts (trainable now: {trainable})")
    return (a[0], fa), (b[0], fb)


def fit_pairs(model: OneEncoder, a: tuple[str, dict], b: tuple[str, dict], *, steps: int,
              batch_size: int = 256, lr: float = 1e-3, weight_decay: float = 1e-3,
              warmup: int = 20, seed: int | None = None, progress: bool = True,
              desc: str | None = None, after_step=None) -> dict[str, list]:
    """Train ``model``'s trainable parameters so that row i of ``a = (name, feats)`` and row i
    of ``b`` embed together: the symmetric CLIP loss at the fixed scale e^2.5. A frozen side (the
    anchor) is embedded once, in eval mode, as fixed targets; if the UP was left trainable (an
    ablation) it is re-embedded through the moving UP every step. ``after_step(step)`` runs after
    each update (e.g. a ``CosineTracker``). Ends on the CPU in eval mode; returns the history."""
    (na, fa), (nb, fb) = _check_pairs(model, a, b, steps, batch_size, lr, weight_decay, warmup, after_step)
    params = [p for p in model.parameters() if p.requires_grad]
    dev = device()
    model.to(dev)
    up_trains = any(p.requires_grad for p in model.up.parameters())
    frozen = [n for n in (na, nb) if not _path_trains(model, n)]
    fixed = {} if up_trains else {n: embed(model, n, {"tokens": f[0], "mask": f[1]}).to(dev)
                                  for n, f in ((na, fa), (nb, fb)) if n in frozen}
    g = torch.Generator().manual_seed(get_seed(seed))
    scale = torch.tensor(LOGIT_SCALE, device=dev)

    def side(name, feats, idx):
        if name in fixed:
            return fixed[name][idx.to(dev)]
        return model.encode(name, feats[0][idx].to(dev),
                            None if feats[1] is None else feats[1][idx].to(dev))

    def loss_fn(step):
        idx = torch.randperm(len(fa[0]), generator=g)[:batch_size]
        return losses.clip_loss(side(na, fa, idx), side(nb, fb, idx), scale)

    def set_modes():                     # a frozen path (and a frozen UP) keeps its dropout off
        model.train()
        model.up.train(up_trains)
        for n in frozen:
            model.heads[n].eval()
            model.modality_tokens[n].eval()

    def hook(step):                      # a hook may embed (eval mode): restore the modes after it
        after_step(step)
        set_modes()

    set_modes()
    try:
        return train.fit(loss_fn, params, range(steps), steps=steps, lr=lr,
                         weight_decay=weight_decay, warmup=warmup, desc=desc or f"{na}-{nb} pairs",
                         progress=progress, after_step=None if after_step is None else hook)
    finally:
        model.zero_grad(set_to_none=True)       # no stale gradients left on the parameters
        model.cpu().eval()


class CosineTracker:
    """A ``fit_pairs(after_step=...)`` hook: at the first, every ``every``-th and the ``steps``-th
    step it embeds ``feats`` (n rows) through ``name`` and records for each ``targets[key]``
    (``[n, dim]``, row i with row i) the mean cosine (1/n) sum_i <y_i, t_i> in ``history``."""

    def __init__(self, model: OneEncoder, name: str, feats: dict, targets: dict, every: int = 10,
                 steps: int | None = None):
        if not isinstance(model, OneEncoder):
            raise ValueError(f"model: got {type(model).__name__}, expected a progressive.OneEncoder")
        _validate.one_of("name", name, model.modalities)
        tokens, mask = _features("feats", feats)
        if not isinstance(targets, dict) or not targets:
            raise ValueError(f"targets: got {type(targets).__name__}, "
                             "expected a non-empty dict of [n, dim] embeddings")
        for key, t in targets.items():
            if _validate.tensor(f"targets[{key!r}]", t, 2).shape != (len(tokens), model.dim):
                raise ValueError(f"targets[{key!r}]: got shape {tuple(t.shape)}, expected "
                                 f"({len(tokens)}, {model.dim}) "
                                 "(a row per row of feats, the model's width)")
        self.every = _validate.positive_int("every", every)
        self.last = None if steps is None else _validate.positive_int("steps", steps)
        self.model, self.name, self.feats = model, name, {"tokens": tokens, "mask": mask}
        self.targets = {k: nn.functional.normalize(t.float(), dim=-1) for k, t in targets.items()}
        self.history: dict[str, list] = {"step": [], **{k: [] for k in targets}}

    def __call__(self, step: int) -> None:
        if step == 0 or (step + 1) % self.every == 0 or step + 1 == self.last:
            y = embed(self.model, self.name, self.feats)
            self.history["step"].append(step + 1)
            for k, t in self.targets.items():
                self.history[k].append((y * t).sum(-1).mean().item())
