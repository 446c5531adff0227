"""What a wrong answer to an exercise most likely got wrong: hints that ``check`` appends to
its verdict when a result is transposed, a simple multiple of the reference, or equal to a
known wrong version of the reference (one direction of a two-way loss, the scale used
without ``exp``)."""
from __future__ import annotations

import math

import torch


def shape_hint(got: torch.Tensor, want: torch.Tensor) -> str:
    if got.ndim == 2 and tuple(got.shape) == tuple(want.shape)[::-1]:
        return " (is it transposed?)"
    return " (did you forget to sum or average?)" if got.numel() > want.numel() else ""


def ratio_hint(got: torch.Tensor, want: torch.Tensor, n: int | None) -> str:
    """A likely cause when a scalar result is a simple multiple of the reference."""
    if got.numel() != 1 or want.item() == 0:
        return ""
    r = got.item() / want.item()
    known = [(2.0, "twice the reference: did you add the two directions without halving?"),
             (0.5, "half the reference: did you halve one direction only, or divide by 2 twice?")]
    if n and n > 2:
        known += [(float(n), f"{n} times the reference, the batch size: "
                             "did you sum instead of averaging?"),
                  (1.0 / n, f"1/{n} of the reference: did you divide by the batch size twice?")]
    return next((f" Hint: {msg}" for value, msg in known
                 if math.isclose(r, value, rel_tol=1e-3)), "")


def known_mistakes(reference) -> list:
    """Wrong versions of the course's references that a learner is likely to write, each
    with the message that names the mistake (tried in order when the values differ)."""
    import torch.nn.functional as F

    from ..objectives import losses

    def both_ways(x, y, s):
        labels = torch.arange(len(x))
        return (F.cross_entropy(s * x @ y.T, labels) + F.cross_entropy(s * y @ x.T, labels)) / 2
    if reference is losses.similarity:
        return [(lambda x, y: x @ y.T,
                 "normalise each row (F.normalize(..., dim=-1)) before the dot products")]
    if reference is losses.clip_loss:
        return [(lambda x, y, t, *a: losses.clip_loss(x, y, t.log()),
                 "logit_scale is the log of the scale: multiply by logit_scale.exp(), "
                 "not by logit_scale"),
                (lambda x, y, t, *a: losses.info_nce(t.exp() * losses.similarity(x, y)),
                 "that is one direction only: average the image→text and text→image losses"),
                (lambda x, y, t, *a: both_ways(x, y, t.exp()),
                 "normalise the embeddings (your similarity_matrix does) before scaling")]
    if reference is losses.siglip_loss:
        return [(lambda x, y, t, b: losses.siglip_loss(x, y, t.log(), b),
                 "logit_scale is the log of the scale: use logit_scale.exp()"),
                (lambda x, y, t, b: losses.siglip_loss(x, y, t, b) / len(x),
                 "you averaged over all N² pairs: SigLIP sums over pairs and divides by N")]
    return _binding_mistakes(reference)


def _binding_mistakes(reference) -> list:
    """Lesson 06's likely wrong answers: ImageBind's anchored loss and GRAM's."""
    import torch.nn.functional as F

    from ..objectives import binding
    if reference is binding.anchor_loss:
        def one_way(x, others, scales):
            x, labels = F.normalize(x, dim=-1), torch.arange(len(x))
            return sum(F.cross_entropy(torch.as_tensor(scales[m]).exp() * x @ F.normalize(y, dim=-1).T,
                                       labels) for m, y in others.items())
        return [(lambda x, o, sc: binding.anchor_loss(
                    x, o, {m: torch.as_tensor(v).log() for m, v in sc.items()}),
                 "each scale is a log-scale: multiply by exp(scale), not by the scale itself"),
                (one_way, "that is one direction only per modality: average anchor→modality "
                          "and modality→anchor"),
                (lambda x, o, sc: binding.anchor_loss(x, o, sc) / len(o),
                 "the modalities' losses are summed, not averaged")]
    if reference is binding.gram_loss:
        def plus_volume(t, o, s):
            logits, labels = s.exp() * binding.volume_matrix(t, o), torch.arange(len(t))
            return (F.cross_entropy(logits, labels, label_smoothing=0.1)
                    + F.cross_entropy(logits.T, labels, label_smoothing=0.1)) / 2
        return [(lambda t, o, s, *a: binding.gram_loss(t, o, s, label_smoothing=0.0),
                 "GRAM's loss smooths its labels: pass label_smoothing=0.1 to both cross-entropies"),
                (lambda t, o, s, *a: plus_volume(t, o, s),
                 "a small volume is a good match, so the logits are -exp(logit_scale) * V: "
                 "the minus sign is missing"),
                (lambda t, o, s, *a: binding.gram_loss(t, o, s.log()),
                 "logit_scale is the log of the scale: multiply by logit_scale.exp()"),
                (lambda t, o, s, *a: binding.gram_loss(t, o, s, eps=0.0),
                 "add eps = 1e-6 inside the square root, after clamping det G at 0")]
    return []


def local_loss_mistakes() -> list:
    """Lesson 09's likely wrong answers to the local loss (exercise 2), as ``(wrong_function,
    message)`` pairs for ``check.across_processes(..., mistakes=...)``: each runs inside the
    processes, since it gathers."""
    import torch.nn.functional as F

    from ..objectives import distributed

    def without_offset(image_emb, text_emb, logit_scale):
        img, txt = F.normalize(image_emb, dim=-1), F.normalize(text_emb, dim=-1)
        all_img, all_txt = distributed.gather(img), distributed.gather(txt)
        labels, s = torch.arange(len(img)), logit_scale.exp()
        return (F.cross_entropy(s * img @ all_txt.T, labels)
                + F.cross_entropy(s * txt @ all_img.T, labels)) / 2
    return [(without_offset,
             "the labels are not offset by the rank: row i of process r is pair r * N_local + i "
             "in the gathered columns, so the labels are arange(N_local) + rank * N_local "
             "(rank 0 comes out right either way, which is why its value matches)"),
            (lambda i, t, s: distributed.gathered_clip_loss(i, t, s),
             "that is the gathered form's loss (the whole [N_g, N_g] matrix): the local loss "
             "scores only this process's rows against the gathered columns")]


def mistake_hint(learner_out, reference, args, mistakes) -> str:
    for wrong, message in [*mistakes, *known_mistakes(reference)]:
        try:
            out = wrong(*args)
            if isinstance(out, torch.Tensor) and torch.allclose(
                    torch.as_tensor(learner_out).detach().double(), out.detach().double(),
                    atol=1e-5, rtol=1e-4):
                return f" Likely cause: {message}."
        except Exception:                     # a variant that does not fit these inputs
            continue
    return ""
