"""Progressive alignment of new modalities: OneEncoder's Universal Projection (Faye et al. 2024).

Frozen unimodal backbones give token outputs ``[N, L, w_m]`` for each modality m.

* A **projection head** (stage 1) or an **alignment layer** (later stages) maps every
  token to the shared width d:  h = LayerNorm(Dropout(W2 GELU(W1 x)))          [N, L, d]
* A **modality token**: a learnable vector e_m through a small MLP, m = MLP(e_m)   [1, d]
* The **Universal Projection** (UP), one shared transformer layer with a residual:
  z = h + m;  u = z + Layer(LayerNorm(z));  y = normalise(mean_tokens(u))           [N, d]

Stage 1 trains the image and text heads, their modality tokens and the UP on
image-text pairs. Each later stage freezes all of that and trains only a new
modality's alignment layer and modality token, against a frozen modality's embeddings:

    model = OneEncoder(dim=128).add_modality("image", 64).add_modality("text", 384)
    fit_pairs(model, ("image", img_feats), ("text", txt_feats), steps=600)      # stage 1
    model.add_modality("audio", 64, freeze=True)                                # stage 2
    fit_pairs(model, ("audio", aud_feats), ("image", img_feats), steps=300)

Official code: github.com/b-faye/OneEncoder ("contrastive learning/"), in two versions:
HEAD (91edf3d; stage 1 ``text-image/addition/text_image.py``, later stages e.g.
``audio-image/addition/audio_image.py``) and the first version (commit 60b2b62; stage 1
``image and text/text_image.py``). As in both: the head's layer order; the logit scale
fixed at e^2.5 (``LOGIT_SCALE`` = 2.5: the code clamps ``temperature.data`` to [2.5, 3]
from 0.07); the modality token added to every token;
LayerNorm, encoder, residual, mean; everything from earlier stages frozen; AdamW at lr
1e-3, weight decay 1e-3.

Where this differs, on purpose (the lesson says so too):
- the modality token: here 32-d, through an MLP (64 -> 128 -> d, ReLUs, LayerNorm) per
  modality; HEAD's is 3-d, through one MLP (3 -> 64 -> 128 -> 256) shared by image and text;
  the first version adds a raw ``[1, 768]`` token;
- one shared ``nn.TransformerEncoderLayer`` with feed-forward 4d; HEAD also uses 1 layer
  (d_model 256, PyTorch's default feed-forward 2048), the first version stacks 4 at
  d_model 768;
- the layer gets the padding mask and the pooling skips padding (both pool all positions);
- a frozen path (and a frozen UP) runs in eval mode, so a stage's targets have no dropout
  (both versions keep the whole model in training mode);
- warm-up and cosine decay (the code: ReduceLROnPlateau over epochs); ``fit_pairs``'s
  default batch is 256, the lesson's 128 in ``quick`` (HEAD 64, the first version 512);
- the official ``text_audio.py`` and ``text_video.py`` (both versions) anchor the new
  modality on frozen *text*; the ``audio-image/`` scripts (HEAD only), VIP-ANT and the
  lesson anchor it on frozen images. ``fit_pairs`` takes either.
"""
from __future__ import annotations

import torch
from torch import nn

from . import _validate, losses, train
from .ops import check_mask, in_chunks, masked_mean, mean_over_tokens  # noqa: F401 (masked_mean: the lesson's reference)
from ._core import device, get_seed

LOGIT_SCALE = 2.5          # ln of the fixed scale e^2.5 ~ 12.2 of the official code


class ProjectionHead(nn.Module):
    """Every token of a backbone to the shared width: ``[N, L, in_dim]`` -> ``[N, L, dim]``,
    h = LayerNorm(Dropout(W2 GELU(W1 x)))."""

    def __init__(self, in_dim: int, dim: int, dropout: float = 0.1):
        super().__init__()
        _validate.positive_int("in_dim", in_dim), _validate.positive_int("dim", dim)
        self.in_dim, self.dim = in_dim, dim
        self.net = nn.Sequential(nn.Linear(in_dim, dim), nn.GELU(), nn.Linear(dim, dim),
                                 nn.Dropout(dropout), nn.LayerNorm(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class AlignmentLayer(ProjectionHead):
    """The head of a modality added after stage 1: the same shape as a projection
    head, but the only part of its path (with its modality token) that is trained."""


class ModalityToken(nn.Module):
    """A learnable ``[1, token_dim]`` vector through Linear-ReLU-Linear-ReLU-Linear-LayerNorm:
    ``forward()`` -> ``[1, dim]``. The MLP is that of the official code at HEAD (stage 1
    ``text-image/addition/text_image.py``, where one MLP on a 3-d token is shared by image
    and text, and the later-stage scripts); the first version (commit 60b2b62) has no MLP.
    As in both versions the vector starts as N(0, s^2) with s drawn uniformly from
    [0.1, 0.6]."""

    def __init__(self, dim: int, token_dim: int = 32, hidden: tuple[int, int] = (64, 128)):
        super().__init__()
        _validate.positive_int("dim", dim), _validate.positive_int("token_dim", token_dim)
        if not (isinstance(hidden, (tuple, list)) and len(hidden) == 2):
            raise ValueError(f"hidden: got {hidden!r}, expected two layer widths such as (64, 128)")
        _validate.positive_int("hidden[0]", hidden[0]), _validate.positive_int("hidden[1]", hidden[1])
        std = 0.1 + 0.5 * torch.rand(()).item()
        self.token = nn.Parameter(std * torch.randn(1, token_dim))
        self.mlp = nn.Sequential(nn.Linear(token_dim, hidden[0]), nn.ReLU(),
                                 nn.Linear(hidden[0], hidden[1]), nn.ReLU(),
                                 nn.Linear(hidden[1], dim), nn.LayerNorm(dim))

    def forward(self) -> torch.Tensor:
        return self.mlp(self.token)


class UniversalProjection(nn.Module):
    """The shared encoder every modality goes through:
    z = h + m;  u = z + Layer(LayerNorm(z));  y = normalise(masked_mean(u)).

    ``forward(h [N, L, dim], m [1, dim], mask [N, L] or None)`` -> ``[N, dim]`` (unit
    norm); ``return_tokens=True`` also returns u ``[N, L, dim]``. ``Layer`` is one
    ``nn.TransformerEncoderLayer`` (``attn_heads`` attention heads, feed-forward ``4 * dim``)."""

    def __init__(self, dim: int, attn_heads: int = 4, dropout: float = 0.1):
        super().__init__()
        _validate.positive_int("dim", dim), _validate.positive_int("attn_heads", attn_heads)
        if dim % attn_heads:
            raise ValueError(f"attn_heads: got {attn_heads}, expected a divisor of dim={dim}")
        self.dim = dim
        self.norm = nn.LayerNorm(dim)
        self.layer = nn.TransformerEncoderLayer(dim, attn_heads, 4 * dim, dropout, batch_first=True)

    def forward(self, h: torch.Tensor, m: torch.Tensor, mask: torch.Tensor | None = None,
                return_tokens: bool = False):
        check_mask(mask, h.shape[:2])                              # before the layer uses it
        z = h + m                                                   # the modality token on every token
        pad = None if mask is None else ~mask
        u = z + self.layer(self.norm(z), src_key_padding_mask=pad)  # residual around the shared layer
        y = nn.functional.normalize(mean_over_tokens(u, mask), dim=-1)
        return (y, u) if return_tokens else y


class OneEncoder(nn.Module):
    """Projection heads (``self.heads``) and modality tokens (``self.modality_tokens``),
    one of each per modality, around one Universal Projection (``self.up``).

    ``add_modality(name, in_dim)`` adds a projection head and a modality token;
    ``freeze=True`` first freezes every part already there and adds an
    ``AlignmentLayer`` instead (a later stage): train each new modality before adding
    the next, since adding one freezes the one before. ``encode(name, tokens, mask)`` ->
    ``[N, dim]`` unit-norm embeddings of backbone tokens ``[N, L, in_dim]``.
    """

    def __init__(self, dim: int = 128, attn_heads: int = 4, token_dim: int = 32, dropout: float = 0.1):
        super().__init__()
        _validate.positive_int("token_dim", token_dim)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ValueError(f"dropout: got {dropout!r}, expected a probability in [0, 1)")
        self.dim, self.token_dim, self.dropout = _validate.positive_int("dim", dim), token_dim, float(dropout)
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
            self.requires_grad_(False)
        head = (AlignmentLayer if freeze else ProjectionHead)(in_dim, self.dim, self.dropout)
        self.heads[name] = head.to(self.up.norm.weight.device)
        self.modality_tokens[name] = ModalityToken(self.dim, self.token_dim).to(self.up.norm.weight.device)
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
                raise ValueError(f"{arg}: got a tensor on {t.device}, expected it on the model's device {dev}")

    def encode(self, name: str, tokens: torch.Tensor, mask: torch.Tensor | None = None,
               return_tokens: bool = False):
        self._check(name, tokens, mask)
        h = self.heads[name](tokens.float())
        return self.up(h, self.modality_tokens[name](), mask, return_tokens)


def _features(name: str, feats) -> tuple[torch.Tensor, torch.Tensor | None]:
    if not isinstance(feats, dict) or "tokens" not in feats:
        raise ValueError(f"{name}: got {type(feats).__name__}, expected a dict with 'tokens' "
                         "[N, L, w] (and 'mask' [N, L] or None), as unimodal.token_features gives")
    return feats["tokens"], feats.get("mask")


def _rows(feats, idx):
    tokens, mask = feats
    return tokens[idx], None if mask is None else mask[idx]


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
    parts = [*model.heads[name].parameters(), *model.modality_tokens[name].parameters()]
    return any(p.requires_grad for p in parts)


def _check_pairs(model, a, b, steps, batch_size, lr, weight_decay, warmup):
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
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("model: got no trainable parameters, expected a new modality to train "
                         "(add one with add_modality)")
    return (a[0], fa), (b[0], fb)


def _check_stage(model, na: str, nb: str) -> bool:
    """At least one side trains; if the UP trains, both do. Returns whether the UP trains."""
    ta, tb = _path_trains(model, na), _path_trains(model, nb)
    if not (ta or tb):
        trainable = [n for n in model.modalities if _path_trains(model, n)]
        raise ValueError(f"a, b: got modalities {na!r} and {nb!r}, both frozen, expected at least one "
                         f"with trainable parts (trainable now: {trainable})")
    up_trains = any(p.requires_grad for p in model.up.parameters())
    if up_trains and not (ta and tb):
        raise ValueError(f"a, b: got a frozen modality ({na if not ta else nb!r}) while the "
                         "Universal Projection trains, expected both sides trainable (stage 1) or "
                         "the UP frozen too (a later stage): a frozen side's targets would go stale")
    return up_trains


def fit_pairs(model: OneEncoder, a: tuple[str, dict], b: tuple[str, dict], *, steps: int,
              batch_size: int = 256, lr: float = 1e-3, weight_decay: float = 1e-3,
              warmup: int = 20, seed: int | None = None, progress: bool = True,
              desc: str | None = None) -> dict[str, list]:
    """Train ``model``'s trainable parameters so that row i of ``a = (name, feats)`` and
    row i of ``b`` embed together: the symmetric CLIP loss at the fixed scale e^2.5.

    A side whose modality has nothing left to train (stage 2's image side) is embedded
    once, in eval mode, and used as a fixed target. Runs on ``tutorlib.device()``; the
    model ends on the CPU in eval mode, with no gradients left. Returns ``train.fit``'s history.
    """
    (na, fa), (nb, fb) = _check_pairs(model, a, b, steps, batch_size, lr, weight_decay, warmup)
    params = [p for p in model.parameters() if p.requires_grad]
    dev = device()
    model.to(dev)
    up_trains = _check_stage(model, na, nb)
    fixed = {n: embed(model, n, {"tokens": f[0], "mask": f[1]}).to(dev)
             for n, f in ((na, fa), (nb, fb)) if not _path_trains(model, n)}
    g = torch.Generator().manual_seed(get_seed(seed))
    scale = torch.tensor(LOGIT_SCALE, device=dev)

    def side(name, feats, idx):
        if name in fixed:
            return fixed[name][idx.to(dev)]
        tokens, mask = _rows(feats, idx)
        return model.encode(name, tokens.to(dev), None if mask is None else mask.to(dev))

    def loss_fn(step):
        idx = torch.randperm(len(fa[0]), generator=g)[:batch_size]
        return losses.clip_loss(side(na, fa, idx), side(nb, fb, idx), scale)

    model.train()
    for name in fixed:              # a frozen path keeps its dropout off
        model.heads[name].eval(), model.modality_tokens[name].eval()
    if not up_trains:
        model.up.eval()
    try:
        return train.fit(loss_fn, params, range(steps), steps=steps, lr=lr, weight_decay=weight_decay,
                         warmup=warmup, desc=desc or f"{na}-{nb} pairs", progress=progress)
    finally:
        model.zero_grad(set_to_none=True)       # no stale gradients left on the parameters
        model.cpu().eval()
