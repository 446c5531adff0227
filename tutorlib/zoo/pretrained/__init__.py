"""The course's "pretrained" mini-CLIP: trained once, deterministically, then cached.

Lesson 01 builds every piece of this recipe by hand; lessons 02-04 load the result:

    model, history = pretrained.mini_clip()  # from the cache, or trained (about a minute)
    model, history = pretrained.train_mini_clip(steps=100, loss="plain", temperature=0.01)

The recipe (``quick``; ``full`` trains longer on a larger world with wider towers):
batches of ``settings().clip_batch_size`` scenes, each with its full caption or a partial
one ("a red object"); a CLIP loss whose soft targets count every caption a scene satisfies
as a positive; AdamW with the text tower at 0.1x the image tower's learning rate; a
learnable temperature clamped to [0, ln 100] and excluded from weight decay.

    data.py         training_data, training_config, clip_batches     what a batch holds
    training.py     recipe, param_groups, train_step, train_mini_clip, mini_clip
    evaluation.py   embed, evaluate                 retrieval and zero-shot
    finetuning.py   finetune                        the last blocks, lessons 02 and 04
"""
from .data import clip_batches, training_config, training_data
from .evaluation import embed, evaluate
from .finetuning import finetune
from .training import build_mini_clip, mini_clip, param_groups, recipe, train_mini_clip, train_step

__all__ = ["training_data", "training_config", "clip_batches",
           "recipe", "param_groups", "train_step", "build_mini_clip", "train_mini_clip",
           "mini_clip", "embed", "evaluate", "finetune"]
