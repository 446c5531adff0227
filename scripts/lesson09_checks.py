"""Two experiments lesson 09's guide relies on that the notebook does not run (each a minute or
two on one CPU thread). Seed from ``TUTORLIB_SEED`` as in the notebook; the profile picks sizes.

    python -m scripts.lesson09_checks seen   # further exercise 5: Part 1 at 4 times the pairs seen
    python -m scripts.lesson09_checks eps    # Part 5: AdamW with every gradient halved, eps 1e-8 and 1e-20

``seen`` trains Part 1's projectors (square-root learning-rate rule, warm-up a tenth of the steps)
at batches 16 / 64 / 256 / 1,024 with 4 times the notebook's pairs seen and prints validation
recall@1. ``eps`` runs Part 5's one-process AdamW run twice, the loss once as is and once halved
(the same as every gradient halved, as the gather without gradient does on 2 processes), at
Adam's default eps and at 1e-20, and prints how far apart the two runs' weights end.
"""
from __future__ import annotations

import math
import sys

import torch

import tutorlib
from tutorlib.methods import fewpairs
from tutorlib.objectives import losses
from tutorlib.training import train

BATCHES, BASE_LR = (16, 64, 256, 1024), 1e-3


def seen(seed: int) -> None:
    tr, val = fewpairs.features("train", 5000), fewpairs.features("val", 1000)
    pairs = 4 * tutorlib.pick(8192, 131072)
    print(f"seed {seed}, {pairs:,} pairs seen (4 times the notebook's)")
    for b in BATCHES:
        steps = pairs // b
        img, txt, _ = fewpairs.train_projectors(tr, len(tr["text"]), "clip", seed=seed, steps=steps, batch_size=b,
                                                lr=BASE_LR * math.sqrt(b / 64), warmup=max(1, steps // 10))
        r = fewpairs.evaluate(img, txt, val)
        print(f"batch {b:5d}: {steps:6d} steps, val recall@1 {r['recall@1']:.3f}, zero-shot {r['zero-shot']:.3f}")


def eps(seed: int) -> None:
    tr = fewpairs.features("train", 5000)
    x, y = tr["image"][:, -1].float(), tr["text"].float()
    steps, batch, scale = tutorlib.pick(100, 1000), 128, torch.tensor(math.log(1 / 0.07))

    def run(factor: float, eps_: float) -> torch.Tensor:
        model = fewpairs.ProjectorPair(x.shape[1], y.shape[1], seed)
        g = torch.Generator().manual_seed(seed)

        def loss_fn(step):
            idx = torch.randperm(len(y), generator=g)[:batch]
            return factor * losses.clip_loss(*model(x[idx], y[idx]), scale)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0, eps=eps_)
        train.fit(loss_fn, None, range(steps), steps=steps, lr=1e-3, warmup=15, optimizer=opt, progress=False)
        return torch.cat([p.detach().flatten() for p in model.parameters()])
    print(f"seed {seed}, {steps} AdamW steps of Part 5's one-process run, loss × 1 against loss × 0.5")
    for e in (1e-8, 1e-20):
        d = (run(1.0, e) - run(0.5, e)).abs()
        print(f"eps {e:g}: max |Δ weight| {d.max():.1e}, median {d.median():.1e}, share beyond 1e-4 {(d > 1e-4).float().mean():.2%}")


if __name__ == "__main__":
    what = sys.argv[1:] or ["seen", "eps"]
    if not set(what) <= {"seen", "eps"}:
        sys.exit(f"usage: python -m scripts.lesson09_checks [seen] [eps]; got {what}")
    seed = tutorlib.seed_everything()
    for w in what:
        {"seen": seen, "eps": eps}[w](seed)
