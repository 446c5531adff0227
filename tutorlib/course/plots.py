"""Figures for the lessons: one function per kind of picture, each returning the figure."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import cycler

from ..core import _validate
from ..objectives import mixup

# Okabe & Ito's colour-blind-safe palette, and a marker per modality:
# no meaning rides on colour alone
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
LINESTYLES = ("-", "--", "-.", ":",
              (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), (0, (1, 3)), (0, (8, 2, 2, 2)))
MODALITY_COLOURS = {"image": "#0072B2", "text": "#E69F00", "audio": "#009E73", "video": "#CC79A7"}
MODALITY_MARKERS = {"image": "o", "text": "^", "audio": "s", "video": "D"}
OTHER_MARKERS = ("v", "P", "*", "X", "<", ">")


def course_style() -> None:
    """Set the course's figure defaults (every notebook calls this once, in its set-up cell):
    lines cycle through Okabe & Ito's colour-blind-safe colours *and* a line style each, so
    two curves differ in more than colour (in grey-scale print too)."""
    plt.rcParams["axes.prop_cycle"] = cycler(color=OKABE_ITO) + cycler(linestyle=LINESTYLES)


def _img(x: torch.Tensor):
    x = x.detach().cpu()
    if not x.is_floating_point():        # stored images: integers 0..255
        x = x.float() / 255
    return x.permute(1, 2, 0).clamp(0, 1).numpy()


def scene_grid(images: torch.Tensor, captions=None, cols: int = 6, size: float = 1.8):
    """A grid of images ``[N, 3, H, W]`` with their captions underneath."""
    _validate.tensor("images", images, 4, floating=False)
    _validate.positive_int("cols", cols)
    n = len(images)
    if captions is not None and len(captions) != n:
        raise ValueError(f"captions: got {len(captions)}, expected one per image ({n})")
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * size, rows * (size + 0.4)), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(_img(images[i]), interpolation="nearest")
            if captions is not None:
                ax.set_title(_wrap(captions[i]), fontsize=7)
    fig.tight_layout()
    return fig


def _wrap(text: str, width: int = 24) -> str:
    import textwrap
    return "\n".join(textwrap.wrap(text, width)[:3])


def similarity_matrix(sim: torch.Tensor, row_labels=None, col_labels=None,
                      title: str = "cosine similarity"):
    """Heatmap of a similarity matrix ``[N, M]`` (rows: e.g. images; columns: texts)."""
    _validate.tensor("sim", sim, 2)
    fig, ax = plt.subplots(figsize=(0.45 * sim.shape[1] + 3, 0.45 * sim.shape[0] + 1.5))
    im = ax.imshow(sim.detach().cpu().numpy(), cmap="viridis")
    fig.colorbar(im, ax=ax, fraction=0.046)
    if col_labels is not None:
        ax.set_xticks(range(len(col_labels)), col_labels, rotation=90, fontsize=7)
    if row_labels is not None:
        ax.set_yticks(range(len(row_labels)), row_labels, fontsize=7)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def embedding_map(embeddings: dict, labels=None,
                  title: str = "embeddings (PCA of normalised vectors)"):
    """2-D PCA map of several modalities' embeddings, each with its own marker and a
    colour-blind-safe colour: ``embedding_map({"image": [N, d], "text": [M, d]})``. Lines join
    matched pairs when every modality has the same number of rows; a large outlined marker
    shows each modality's mean."""
    if not isinstance(embeddings, dict) or not embeddings:
        raise ValueError("embeddings: expected a dict of modality name -> [N, d] tensor")
    names = list(embeddings)
    xs = [torch.nn.functional.normalize(_validate.tensor(f"embeddings[{k!r}]", embeddings[k], 2)
                                        .detach().float().cpu(), dim=-1) for k in names]
    widths = {x.shape[1] for x in xs}
    if len(widths) != 1:
        raise ValueError(f"embeddings: got widths {sorted(widths)}, expected one shared width")
    allx = torch.cat(xs)
    mean = allx.mean(0)
    _, _, v = torch.pca_lowrank(allx - mean, q=2, center=False)
    pts = [(x - mean) @ v[:, :2] for x in xs]
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    if len({len(p) for p in pts}) == 1 and len(pts) > 1:
        for j in range(min(len(pts[0]), 60)):
            ax.plot([p[j, 0] for p in pts], [p[j, 1] for p in pts], color="0.8", lw=0.5, zorder=0)
    for k, (name, p) in enumerate(zip(names, pts)):
        marker = MODALITY_MARKERS.get(name, OTHER_MARKERS[k % len(OTHER_MARKERS)])
        ax.scatter(p[:, 0], p[:, 1], s=10, label=name, marker=marker,
                   color=MODALITY_COLOURS.get(name))
        c = p.mean(0)
        ax.scatter([c[0]], [c[1]], s=170, marker=marker, edgecolor="k", linewidth=1.5,
                   color=MODALITY_COLOURS.get(name))
    ax.legend()
    ax.set_title(title)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    fig.tight_layout()
    return fig


def filmstrip(video: torch.Tensor, title: str | None = None):
    """The frames of one video ``[T, 3, H, W]`` side by side."""
    _validate.tensor("video", video, 4, floating=False)
    t = len(video)
    fig, axes = plt.subplots(1, t, figsize=(1.6 * t, 1.9), squeeze=False)
    for i, ax in enumerate(axes[0]):
        ax.imshow(_img(video[i]), interpolation="nearest")
        ax.set_title(f"t={i}", fontsize=8)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def spectrogram(mel: torch.Tensor, title: str | None = None, ax=None):
    """A log-mel spectrogram ``[M, T]`` (mel bands up, time right)."""
    _validate.tensor("mel", mel, 2)
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(3.2, 2.4))
    ax.imshow(mel.detach().cpu().numpy(), origin="lower", aspect="auto", cmap="magma")
    ax.set_xlabel("frame")
    ax.set_ylabel("mel band")
    if title:
        ax.set_title(title, fontsize=8)
    if fig is not None:
        fig.tight_layout()
    return fig if fig is not None else ax.figure


def curves(history: dict, keys=None, title: str | None = None):
    """Training curves from ``train.fit``'s history, one panel per key."""
    if not isinstance(history, dict) or "loss" not in history:
        raise ValueError("history: expected the dict returned by tutorlib.training.train.fit")
    keys = [k for k in history if k not in ("lr", "time")] if keys is None else list(keys)
    for k in keys:
        if k not in history:
            raise ValueError(f"keys: got {k!r}, expected one of {list(history)}")
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 2.8), squeeze=False)
    for ax, k in zip(axes[0], keys):
        ax.plot(history[k])
        ax.set_title(k)
        ax.set_xlabel("step")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def word_heatmaps(image: torch.Tensor, words, maps: torch.Tensor, title: str | None = None,
                  size: float = 1.7):
    """Where each word looks: the image ``[3, H, W]``, then one panel per word with its cosine
    to every patch ``maps`` ``[K, P]`` (P = g x g patches, row by row) laid over the image,
    and its best patch outlined (a dashed box), so the answer does not ride on colour alone."""
    from matplotlib.patches import Rectangle
    _validate.tensor("image", image, 3, floating=False)
    _validate.tensor("maps", maps, 2, finite=False)
    g = round(maps.shape[1] ** 0.5)
    if g * g != maps.shape[1] or len(words) != len(maps):
        raise ValueError(f"words, maps: got {len(words)} words "
                         f"and maps of shape {tuple(maps.shape)}, "
                         "expected one row of g*g patch scores per word")
    fig, axes = plt.subplots(1, 1 + len(words), figsize=((1 + len(words)) * size, size + 0.5),
                             squeeze=False)
    axes = axes[0]
    axes[0].imshow(_img(image), interpolation="nearest")
    axes[0].set_title("image", fontsize=8)
    H, cell = image.shape[-1], image.shape[-1] / g
    for ax, word, m in zip(axes[1:], words, maps.detach().cpu()):
        ax.imshow(_img(image), interpolation="nearest")
        ax.imshow(m.view(g, g).numpy(), cmap="cividis", alpha=0.6, extent=(0, H, H, 0),
                  interpolation="nearest")
        r, c = divmod(int(m.argmax()), g)
        ax.add_patch(Rectangle((c * cell, r * cell), cell, cell,
                               fill=False, ls="--", lw=1.5, ec="white"))
        ax.set_title(f'"{word}"', fontsize=8)
    for ax in axes:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def softmax_bars(p: torch.Tensor, title: str | None = None,
                 xlabel: str = "caption (0 = the right one)", ylabel: str = "softmax"):
    """One softmax row ``p`` ``[K]`` as bars, the right answer (entry 0) in green and the others
    grey: how peaked a row is at a given temperature (lesson 01's slider)."""
    _validate.tensor("p", p, 1)
    fig, ax = plt.subplots(figsize=(6, 2.4))
    ax.bar(range(len(p)), p, color=["tab:green"] + ["tab:gray"] * (len(p) - 1))
    ax.set_ylim(0, 1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    return fig


def slerp_path(a: torch.Tensor, b: torch.Tensor, lam: float, n: int = 41):
    """Slerp against a straight line between two points of the unit sphere in 3-D, ``a`` and
    ``b`` ``[3]`` or ``[1, 3]`` (normalised here): left, the sphere with both paths and the
    point each reaches at ``lam`` (``mixup.slerp``'s convention: 1 gives ``a``, 0 gives
    ``b``); right, the norm of the interpolated point along each path (``n`` points): the
    arc stays on the sphere, the line dips inside. Colour-blind-safe, a line style and a
    marker each."""
    a, b = (torch.nn.functional.normalize(_validate.tensor(name, v).reshape(1, -1), dim=-1)
            for name, v in (("a", a), ("b", b)))
    if a.shape[1] != 3 or b.shape[1] != 3:
        raise ValueError(f"a, b: got {a.shape[1]} and {b.shape[1]} coordinates, expected 3 each")
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not 0 <= lam <= 1:
        raise ValueError(f"lam: got {lam!r}, expected a number in [0, 1]")
    _validate.positive_int("n", n)
    lams = torch.linspace(0, 1, n)[:, None]
    arc = mixup.slerp(a.expand(n, -1), b.expand(n, -1), lams.squeeze(1))
    line = lams * a + (1 - lams) * b
    SLERP, LINEAR = dict(color="#009E73", ls="-"), dict(color="#D55E00", ls="--")
    fig = plt.figure(figsize=(9, 3.8))
    ax = fig.add_subplot(1, 2, 1, projection="3d")
    u, v = torch.meshgrid(torch.linspace(0, math.pi, 24), torch.linspace(0, 2 * math.pi, 48),
                          indexing="ij")                                   # the sphere's wireframe
    ax.plot_wireframe(u.sin() * v.cos(), u.sin() * v.sin(), u.cos(), color="0.85", lw=0.4)
    ax.plot(*arc.T, **SLERP, lw=2, label="slerp")
    ax.plot(*line.T, **LINEAR, lw=2, label="linear")
    p, q = mixup.slerp(a, b, lam)[0], lam * a[0] + (1 - lam) * b[0]
    ax.scatter(*p, color=SLERP["color"], marker="o", s=40)
    ax.scatter(*q, color=LINEAR["color"], marker="s", s=40)
    ax.set_box_aspect((1, 1, 1))
    ax.legend(loc="upper left")
    ax.set_title(f"lambda = {lam:.2f}")
    ax2 = fig.add_subplot(1, 2, 2)
    ax2.plot(lams, arc.norm(dim=1), **SLERP, marker="o", markevery=5, label="slerp")
    ax2.plot(lams, line.norm(dim=1), **LINEAR, marker="s", markevery=5, label="linear")
    ax2.axvline(lam, color="0.5", ls=":")
    ax2.set_xlabel("lambda")
    ax2.set_ylabel("norm of the interpolated point")
    ax2.legend()
    fig.tight_layout()
    return fig


def seed_dots(ax, values: dict, title: str = "", baseline: float | None = None, labels=None):
    """Several runs of several methods on one axis: ``values`` maps each method to its runs'
    values (one per seed), drawn as dots in the method's column with their mean as a bar;
    ``baseline`` (e.g. the model before fine-tuning) as a dashed line. ``labels``: the
    columns' tick labels (default: the methods' names). Returns ``ax``."""
    if not isinstance(values, dict) or not values:
        raise ValueError("values: expected a dict of method name -> its runs' values")
    labels = list(values) if labels is None else list(labels)
    if len(labels) != len(values):
        raise ValueError(f"labels: got {len(labels)}, expected one per method ({len(values)})")
    for k, (name, vals) in enumerate(values.items()):
        vals = np.asarray(vals, dtype=float).reshape(-1)
        if not len(vals):
            raise ValueError(f"values[{name!r}]: got no values, expected one per run")
        ax.scatter([k] * len(vals), vals, color=f"C{k}", zorder=3, s=18)
        ax.hlines(vals.mean(), k - 0.3, k + 0.3, color=f"C{k}")
    if baseline is not None:
        ax.axhline(baseline, color="gray", ls="--", lw=1)
    ax.set_xticks(range(len(values)), labels, fontsize=8)
    ax.set_title(title, fontsize=10)
    return ax
