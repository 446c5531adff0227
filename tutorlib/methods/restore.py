"""RESTORE's pieces (Yang et al. 2024, "RESTORE: Towards Feature Shift for Vision-Language
Prompt Learning") on top of CoOp's context (``tutorlib.methods.prompts``): prompts in both towers,
each modality's feature shift, the shift-consistency loss, surgery adapters, and the
released code's stand-in for the shift.

    vp = VisualPrompts(learner, image_width)           # one image prompt token per context vector
    img = encode_image_with_prompts(model.image_tower, images, vp(), layer=0)
    feature_shift(prompted, frozen)                    # mean ||f(x; P) - f(x; none)||
    shift_consistency_loss(text_shift, image_shift)    # (shift_T - shift_I)^2
    SurgeryAdapter(d, r=0.2)                           # f' = r g(f) + (1 - r) f
    net = MultimodalPrompts(model, tok, classnames, prompt_layer=1, r_text=0.2, r_image=0.2)
    restore_loss(cls, img, labels, frozen_cls, frozen_img, scale, net.adapted, lam=10.0)
    train_multimodal_prompts(net, states, frozen_img, labels, frozen_cls,
                             logit_scale=scale, lam=10.0)

The towers stay frozen: only the prompt parameters and adapters receive gradients.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core import _validate
from ..core.ops import last_real
from ..core.runtime import get_seed
from ..training import train
from ..models.heads import mlp
from ..models.interface import PromptableImage, require
from .prompts import PromptLearner, class_logits

class VisualPrompts(nn.Module):
    """Visual prompt tokens derived from the text context by a linear map (the coupling
    of multimodal prompts, as in MaPLe and RESTORE): ``[n_tokens, image_width]``, one
    token per context vector (``n_tokens`` = the learner's ``n_ctx``)."""

    def __init__(self, learner: PromptLearner, image_width: int):
        super().__init__()
        if not isinstance(learner, PromptLearner):
            raise ValueError(f"learner: got {type(learner).__name__}, expected a PromptLearner")
        _validate.positive_int("image_width", image_width)
        self.learner = [learner]                     # not a submodule: its ctx is trained once
        self.proj = nn.Linear(learner.ctx.shape[1], image_width)
        nn.init.normal_(self.proj.weight, std=0.02)
        nn.init.zeros_(self.proj.bias)

    def forward(self) -> torch.Tensor:
        return self.proj(self.learner[0].ctx)


def encode_image_with_prompts(image_tower: nn.Module, images: torch.Tensor | None,
                              prompts: torch.Tensor | None, layer: int = 0,
                              states: torch.Tensor | None = None) -> torch.Tensor:
    """The image tower with visual prompt tokens ``[K, width]`` appended to the token
    sequence that enters block ``layer`` (0: after the position embeddings, "shallow";
    ``depth - 1``: before the last block only): ``[N, 3, H, W]`` -> ``[N, d]``.
    ``prompts=None`` gives the frozen tower's own features. The blocks before ``layer``
    do not see the prompts, so their output can be computed once and passed as
    ``states=image_tower.hidden(images, layer)`` (with ``images=None``) to save time."""
    require("image_tower", image_tower, PromptableImage)
    depth = len(image_tower.encoder.blocks)
    if not isinstance(layer, int) or isinstance(layer, bool) or not 0 <= layer < depth:
        raise ValueError(f"layer: got {layer!r}, expected a block index in 0..{depth - 1}")
    if (images is None) == (states is None):
        raise ValueError("images, states: pass exactly one of them")
    if states is not None:
        _validate.tensor("states", states, 3, finite=False)
        if states.shape[1:] != (1 + image_tower.n_patches, image_tower.width):
            raise ValueError(f"states: got shape {tuple(states.shape)}, expected "
                             f"[N, {1 + image_tower.n_patches}, {image_tower.width}] "
                             "(image_tower.hidden's output)")
    x = image_tower.hidden(images, layer) if states is None else states   # [N, 1 + P, width]
    if prompts is not None:
        _validate.tensor("prompts", prompts, 2, finite=False)
        if prompts.shape[1] != image_tower.width:
            raise ValueError(f"prompts: got width {prompts.shape[1]}, "
                             f"expected the tower's {image_tower.width}")
        x = torch.cat([x, prompts.expand(len(x), -1, -1)], 1)
    return image_tower.from_hidden(x, layer)


def feature_shift(prompted: torch.Tensor, frozen: torch.Tensor) -> torch.Tensor:
    """RESTORE's feature shift of one modality: the mean distance between the normalised
    features with and without prompts, ``mean_i ||f(x_i; P) - f(x_i; none)||`` (a scalar
    tensor, differentiable). Inputs ``[N, d]``, rows paired."""
    _validate.tensor("prompted", prompted, 2, finite=False)
    _validate.tensor("frozen", frozen, 2, finite=False)
    if prompted.shape != frozen.shape:
        raise ValueError(f"prompted, frozen: got shapes {tuple(prompted.shape)} and "
                         f"{tuple(frozen.shape)}, expected the same")
    return (F.normalize(prompted, dim=-1) - F.normalize(frozen, dim=-1)).norm(dim=-1).mean()


def shift_consistency_loss(text_shift: torch.Tensor, image_shift: torch.Tensor) -> torch.Tensor:
    """RESTORE's feature-shift consistency: penalise the two modalities for drifting from
    the frozen model by different amounts, ``(shift_T - shift_I)^2``."""
    for name, v in (("text_shift", text_shift), ("image_shift", image_shift)):
        if not isinstance(v, torch.Tensor) or v.numel() != 1:
            raise ValueError(f"{name}: got {v!r}, "
                             "expected a scalar tensor (feature_shift's output)")
    return (text_shift.reshape(()) - image_shift.reshape(())).pow(2)


def prompt_gram_shift(prompt: torch.Tensor, initial: torch.Tensor) -> torch.Tensor:
    """The stand-in the released RESTORE code uses for a modality's shift: not a distance
    between features but a property of the prompt *parameters*, the Frobenius norm of
    their Gram matrix relative to its value at initialisation,
    ``||P^T P||_F / ||P_0^T P_0||_F`` for prompt tokens ``[M, width]`` (1 = unchanged).
    The code sums the squared text-minus-visual difference of this ratio over its prompt
    layers as the consistency loss."""
    for name, v in (("prompt", prompt), ("initial", initial)):
        _validate.tensor(name, v, 2, finite=False)
    if prompt.shape != initial.shape:
        raise ValueError(f"prompt, initial: got shapes {tuple(prompt.shape)} and "
                         f"{tuple(initial.shape)}, expected the same")
    ref = (initial.T @ initial).norm()
    if ref == 0:
        raise ValueError("initial: got all zeros, expected the prompt's starting values")
    return (prompt.T @ prompt).norm() / ref


class SurgeryAdapter(nn.Module):
    """RESTORE's "surgery" adapter for one modality: ``f' = r g(f) + (1 - r) f`` with the
    residual block ``g(f) = f + FFN(LN(f))``; ``r`` in [0, 1] is how much of the adapted
    feature to mix in. Starts as the identity (the FFN's output layer is zero)."""

    def __init__(self, dim: int, r: float = 0.2, hidden: int | None = None):
        super().__init__()
        _validate.positive_int("dim", dim)
        if not 0.0 <= float(r) <= 1.0:
            raise ValueError(f"r: got {r!r}, expected a ratio in [0, 1]")
        hidden = hidden or dim // 4
        _validate.positive_int("hidden", hidden)
        self.r = float(r)
        self.ln = nn.LayerNorm(dim)
        self.ffn = mlp(dim, hidden, dim)
        nn.init.zeros_(self.ffn[2].weight)
        nn.init.zeros_(self.ffn[2].bias)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        _validate.tensor("f", f, 2, finite=False)
        g = f + self.ffn(self.ln(f))
        return self.r * g + (1 - self.r) * f


class MultimodalPrompts(nn.Module):
    """The prompted model of RESTORE's experiments, piece by piece: CoOp's text context
    (``text``, from ``init``), optionally visual prompts made from it by a linear map
    (``visual``, MaPLe's coupling), entering the image tower before block
    ``prompt_layer``, and optionally a surgery adapter per modality (ratio ``r_text``,
    ``r_image``; ``None``: no adapter on that side). The towers stay frozen.

    ``forward(states, frozen_images)`` -> class features ``[C, d]`` and image features
    ``[N, d]`` *before* the adapters, from the image tower's cached token states before
    ``prompt_layer`` ``[N, 1 + P, width]`` (``image_tower.hidden``); without visual prompts
    the images keep their frozen features ``[N, d]`` and ``states`` may be ``None``.
    ``adapted(cls, img)`` applies the adapters. ``start`` holds the prompts' initial values.
    """

    def __init__(self, model, tokenizer, classnames, *, prompt_layer: int, visual: bool = True,
                 r_text: float | None = None, r_image: float | None = None,
                 init: str | None = "a photo of a", n_ctx: int = 4):
        super().__init__()
        require("model.image_tower", model.image_tower, PromptableImage)
        depth = len(model.image_tower.encoder.blocks)
        if not isinstance(prompt_layer, int) or isinstance(prompt_layer, bool) \
                or not 0 <= prompt_layer < depth:
            raise ValueError(f"prompt_layer: got {prompt_layer!r}, "
                             f"expected a block index in 0..{depth - 1}")
        self.image_tower, self.prompt_layer = [model.image_tower], prompt_layer  # frozen, not owned
        self.text = PromptLearner(model.text_tower, tokenizer, classnames, n_ctx=n_ctx, init=init)
        self.visual = VisualPrompts(self.text, model.image_tower.width) if visual else None
        d = model.text_tower.proj.out_features
        self.adapt_text = None if r_text is None else SurgeryAdapter(d, r_text)
        self.adapt_image = None if r_image is None else SurgeryAdapter(d, r_image)
        with torch.no_grad():                  # the prompts' starting values, moved with .to()
            self.register_buffer("ctx_start", self.text.ctx.clone(), persistent=False)
            self.register_buffer("visual_start", self.visual().clone() if visual else None,
                                 persistent=False)

    @property
    def start(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The text context ``[M, width]`` and visual prompts ``[M, image width]`` (or None) at
        initialisation."""
        return self.ctx_start, self.visual_start

    def forward(self, states, frozen_images: torch.Tensor, classnames=None):
        _validate.tensor("frozen_images", frozen_images, 2, finite=False)
        text = self.text if classnames is None else self.text.for_classes(classnames)
        if self.visual is None:
            return text(), frozen_images
        if states is None or len(states) != len(frozen_images):
            raise ValueError(f"states: got {None if states is None else tuple(states.shape)}, "
                             f"expected the image tower's states before block {self.prompt_layer}, "
                             f"one row per image ({len(frozen_images)})")
        img = encode_image_with_prompts(self.image_tower[0], None, self.visual(),
                                        self.prompt_layer, states=states)
        return text(), img

    def adapted(self, cls: torch.Tensor, img: torch.Tensor):
        """The features after each modality's adapter (unchanged where there is none)."""
        return (cls if self.adapt_text is None else self.adapt_text(cls),
                img if self.adapt_image is None else self.adapt_image(img))


def restore_loss(cls, img, labels, frozen_cls, frozen_img, logit_scale, adapt=None,
                 lam: float = 10.0) -> dict:
    """RESTORE's objective, the paper's form: ``L = CE + lam * (shift_T - shift_I)^2``.

    ``cls`` ``[C, d]`` and ``img`` ``[N, d]`` are the prompted features *before* the
    adapters, ``frozen_cls`` ``[C, d]`` and ``frozen_img`` ``[N, d]`` the frozen model's
    (the hand-made prompts; the images without prompts). The shifts are measured before
    the adapters, so an adapter cannot satisfy the consistency term by moving the
    features itself; the cross-entropy is on the adapted features (``adapt(cls, img)``,
    ``None``: none), at the frozen ``logit_scale`` (log of the scale). ``lam=0`` gives
    plain prompt tuning. Returns ``{"loss", "cross-entropy", "text shift", "image shift"}``.
    """
    _validate.non_negative_number("lam", lam)
    shift_t = feature_shift(cls, frozen_cls)
    shift_i = feature_shift(img, frozen_img)
    cls_a, img_a = (cls, img) if adapt is None else adapt(cls, img)
    ce = F.cross_entropy(class_logits(img_a, cls_a, logit_scale), labels)
    loss = ce + lam * shift_consistency_loss(shift_t, shift_i) if lam else ce
    return {"loss": loss, "cross-entropy": ce.detach(),
            "text shift": shift_t.detach(), "image shift": shift_i.detach()}


def train_multimodal_prompts(net: MultimodalPrompts, states, frozen_images, labels, frozen_text, *,
                             logit_scale, lam: float = 0.0, steps: int = 200, batch_size: int = 64,
                             lr: float = 2e-3, warmup: int = 10, seed: int | None = None,
                             progress: bool = False) -> dict:
    """Train ``net``'s prompts (and adapters) with ``restore_loss`` on random batches of
    ``batch_size`` training images (``states`` ``[N, 1 + P, width]`` or ``None``,
    ``frozen_images`` ``[N, d]``, ``labels`` ``[N]``; ``frozen_text`` ``[C, d]``, the
    hand-made prompts' features) with ``train.fit`` (AdamW, warm-up, cosine); ``seed`` draws
    the batches (None: ``TUTORLIB_SEED``). Returns the history, which also records ``context
    drift``, ``||ctx - ctx_0||`` before each step."""
    if not isinstance(net, MultimodalPrompts):
        raise ValueError(f"net: got {type(net).__name__}, expected a MultimodalPrompts")
    _validate.tensor("frozen_images", frozen_images, 2, finite=False)
    _validate.same_rows("frozen_images", frozen_images, "labels", labels)
    _validate.positive_int("batch_size", batch_size)
    g = torch.Generator().manual_seed(get_seed(seed))
    ctx0 = net.start[0]

    def batches(step):
        return torch.randperm(len(labels), generator=g)[:batch_size].to(labels.device)

    def loss_fn(b):
        cls, img = net(None if states is None else states[b], frozen_images[b])
        out = restore_loss(cls, img, labels[b], frozen_text, frozen_images[b],
                           logit_scale, net.adapted, lam)
        out["context drift"] = (net.text.ctx.detach() - ctx0).norm()
        return out

    params = [p for p in net.parameters() if p.requires_grad]
    return train.fit(loss_fn, params, batches, steps=steps, lr=lr, warmup=warmup, progress=progress,
                     desc="multimodal prompts")


@torch.no_grad()
def text_shift_per_block(learner: PromptLearner, frozen_ids: torch.Tensor) -> torch.Tensor:
    """The text feature shift after every block of the tower ``[depth]``: the mean
    distance between the normalised states of each class's last real token, prompted by
    ``learner`` and from the frozen prompts ``frozen_ids`` ``[C, L]`` (token ids, e.g. the
    hand-made "a photo of a {class}"). RESTORE's paper defines the shift per transformer
    block; the last entry is measured before the tower's final LayerNorm and projection."""
    if not isinstance(learner, PromptLearner):
        raise ValueError(f"learner: got {type(learner).__name__}, expected a PromptLearner")
    _validate.tensor("frozen_ids", frozen_ids, 2, floating=False)
    if len(frozen_ids) != len(learner.classnames):
        raise ValueError(f"frozen_ids: got {len(frozen_ids)} rows, "
                         f"expected one per class ({len(learner.classnames)})")
    tower = learner.text_tower
    embeds, mask = learner.prompt_embeddings()
    f_mask = frozen_ids != tower.pad_id
    x_p = embeds + tower.positional_embedding[:embeds.shape[1]]
    x_f = tower.token_embedding(frozen_ids) + tower.positional_embedding[:frozen_ids.shape[1]]
    rows = torch.arange(len(mask), device=mask.device)
    last_p, last_f = last_real(mask), last_real(f_mask)
    shifts = []
    for k in range(len(tower.encoder.blocks)):
        x_p = tower.encoder(x_p, ~mask, start=k, stop=k + 1)
        x_f = tower.encoder(x_f, ~f_mask, start=k, stop=k + 1)
        shifts.append(feature_shift(x_p[rows, last_p], x_f[rows, last_f]))
    return torch.stack(shifts)
