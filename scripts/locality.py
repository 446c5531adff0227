"""Lesson 07's run-once intervention: do FILIP's words find their objects when the image tower's
patch tokens are local by construction, and is it the loss or the locality that does it?

Every image block is wrapped so that a patch token attends only to itself (the class token still
attends to every token, so CLIP's pooled vector sees the image): each patch token is then a
function of its own pixels and position. Both image blocks are trained (``image_blocks=2``) with
the lesson's recipe otherwise (steps, batch, learning rate, scenes, text blocks frozen). Arms:

    FILIP, ordinary attention   the control: the same budget, blocks that mix freely
    FILIP, local tower          FILIP's loss on the local tower
    CLIP loss, local tower      CLIP's loss (the lesson's smoothing) on the local tower
    local tower, untrained      the starting mini-CLIP with the mask, not trained

Each is measured as in the notebook on the first 1,000 test scenes: image->text recall@1 by its
own score (s^I for FILIP, cosine for CLIP's loss, both for the untrained tower), words on their
object, the same rule for ``<bos>`` (a token that names nothing, but one training can take over)
and for a colour or shape word naming an object absent from the scene (a null it cannot), in
two-object scenes how often a word's best patch is on its own object rather than the other one,
which token wins each patch's max in s^I, and background-only against object-only retrieval by
s^I (the FILIP-local arm is the oracle that shows this test can see local tokens).

    python -m scripts.locality                  # seeds 0-7, `quick`; about 1-2 minutes a seed
    python -m scripts.locality --seeds 0 1 --out /tmp/locality.json
"""
from __future__ import annotations

import argparse
import copy
import json
import time

import pandas as pd
import torch
from torch import nn

import tutorlib
from tutorlib import world
from tutorlib.evaluation import grounding, retrieval
from tutorlib.objectives import finegrained
from tutorlib.zoo import pretrained


class LocalPatches(nn.Module):
    """A tower block whose patch tokens attend only to themselves; the class token (token 0)
    attends to all. Wraps the block, so its weights are the block's own."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block

    def forward(self, x, pad_mask=None, attn_mask=None, first_only=False):
        L = x.shape[1]
        mask = ~torch.eye(L, dtype=torch.bool, device=x.device)      # True = may not attend
        mask[0] = False
        return self.block(x, pad_mask, mask[:1] if first_only else mask, first_only=first_only)


def local_copy(model):
    """A copy of ``model`` whose every image block is ``LocalPatches``."""
    model = copy.deepcopy(model)
    blocks = model.image_tower.encoder.blocks
    for k in range(len(blocks)):
        blocks[k] = LocalPatches(blocks[k])
    return model


def measure(model, test: dict, n: int = 1000, n_bg: int = 500) -> dict:
    """Retrieval and grounding of ``model`` on the first ``n`` test scenes; background-only
    against object-only retrieval by s^I on the first ``n_bg`` (as many background patches
    as object patches, as in the notebook)."""
    scenes, ids = test["scenes"][:n], test["full_ids"][:n]
    positives = world.matches(test["attrs"][:n], test["full_spec"][:n])
    with torch.no_grad():
        e = finegrained.encode(model, world.images_float(test["image"][:n]), ids)
    tok = world.Tokenizer()
    cover = grounding.patch_coverage(world.object_masks(scenes), model.image_tower.patch_size)
    named, _ = grounding.named_objects(ids, scenes, tok)
    named = named[:, :e["y"].shape[1]]
    sim = grounding.word_patch_similarity(e["x"], e["y"])
    hit, chance = grounding.pointing(sim, named, cover)
    bos, _ = grounding.null_pointing(sim, named, cover, grounding.token_columns(ids, tok.bos_id))
    absent, _ = grounding.null_pointing(grounding.word_patch_similarity(e["x"], e["y"].roll(1, 0)), named, cover,
                                        grounding.absent_columns(ids.roll(1, 0), scenes, tok))
    on_named, on_other, _ = grounding.named_or_other(sim, named, cover)
    s_i, _ = finegrained.encoding_scores(e)
    cos, _ = finegrained.encoding_scores(e, token_wise=False)
    wins = grounding.winner_shares(grounding.patch_winners(sim, e["mask"]), ids[:, :e["y"].shape[1]], tok)
    return {"R@1 s^I": retrieval.recall_from_scores(s_i, positives),
            "R@1 cosine": retrieval.recall_from_scores(cos, positives),
            "words on their object": hit.float().mean().item(),
            "<bos> on the words' objects": bos.float().mean().item(),
            "absent word on the words' objects": absent.float().mean().item(),
            "pointing chance": chance.mean().item(),
            "named, not other (2 obj.)": on_named[on_named | on_other].float().mean().item(),
            "decided words (2 obj.)": int((on_named | on_other).sum()),
            **{f"patches won by {k}": v for k, v in wins.items()},
            **patch_groups(e, cover, positives, n_bg)}


def patch_groups(e: dict, cover, positives, n_bg: int, seed: int = 0) -> dict:
    """R@1 by s^I from background patches alone (drawn in the number of each image's object
    patches) and from object patches alone, on the first ``n_bg`` scenes: a local tower's
    background should retrieve next to nothing."""
    background = cover[:n_bg].sum(1) == 0
    votes = finegrained.patch_scores(e["x"][:n_bg], e["y"][:n_bg], e["mask"][:n_bg])
    groups = {"background R@1 (matched)": grounding.matched_patches(background, (~background).sum(1), seed=seed),
              "object R@1": ~background}
    return {g: retrieval.recall_from_scores(finegrained.patch_group_scores(votes, p), positives[:n_bg, :n_bg])
            for g, p in groups.items()}


def run_seed(seed: int) -> dict:
    tutorlib.seed_everything(seed)
    steps, batch, scenes = tutorlib.pick(150, 1000), tutorlib.pick(64, 128), tutorlib.pick(4096, 50000)
    base, _ = pretrained.mini_clip(progress=False, seed=seed)          # the notebook's start at this seed
    data, test = pretrained.training_data(), pretrained.training_data("test")
    local = local_copy(base)

    def train(model, objective):
        return pretrained.finetune(model, data, objective, steps=steps, batch_size=batch, lr=1e-3,
                                   seed=seed, n_scenes=scenes, image_blocks=2, text_blocks=0,
                                   progress=False)[0]
    arms = {"FILIP, ordinary attention": train(base, finegrained.filip_objective()),
            "FILIP, local tower": train(local, finegrained.filip_objective()),
            "CLIP loss, local tower": train(local, finegrained.clip_objective()),
            "local tower, untrained": local}
    return {name: measure(m, test) for name, m in arms.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(8)))
    parser.add_argument("--out", default=None, help="write every number here as JSON")
    args = parser.parse_args(argv)
    results = {}
    for seed in args.seeds:
        start = time.perf_counter()
        results[seed] = run_seed(seed)
        print(f"\nseed {seed} ({tutorlib.profile()}, {time.perf_counter() - start:.0f} s)")
        print(pd.DataFrame(results[seed]).T.round(3).to_string(), flush=True)
        if args.out:
            with open(args.out, "w") as f:
                json.dump(results, f, indent=1)
    table = pd.concat({s: pd.DataFrame(r).T for s, r in results.items()})
    print("\nmin and max over seeds", args.seeds)
    print(table.groupby(level=1).agg(["min", "max"]).round(3).T.to_string())


if __name__ == "__main__":
    main()
