"""A procedural world of shapes, seen as image, text, audio and video.

A *scene* holds one or two objects. Each object has a shape, a colour, a size, a
position on a 3x3 grid and a motion. Everything is generated from a seed, so it is
offline, fast, deterministic and has known ground truth.

    scenes = sample_scenes(8, seed=0)          # Scenes: integer attribute tensors
    render_images(scenes)                       # [8, 3, H, W] floats in [0, 1]
    captions(scenes)                            # 8 strings from a small grammar
    render_audio(scenes); log_mel(wave)         # [8, L] waveform, [8, M, T] features
    render_video(scenes)                        # [8, T, 3, H, W]
    load_world("train", n=..., modalities=...)  # a cached datasets.Dataset

One module per concern: ``vocabulary`` (attribute values, words, split rules),
``scenes``, ``images`` (and videos), ``audio``, ``text`` (captions, what they assert,
class prompts), ``tokenizer``, ``dataset`` and ``camera`` (a shifted rendering domain for
lessons 03 and 04); every public name is available here, as ``world.X``.
"""
from .vocabulary import (ATTRIBUTES, BASE_SHAPES, COLOURS, MODALITIES, MOTIONS, NOUNS, NOVEL_PAIRS,
                         NOVEL_SHAPES, PARTIALS, POSITIONS, RELATIONS, RGB, SHAPES, SIZES, SPLITS,
                         SYNONYMS, TEMPLATES, SPLIT_SEEDS)
from .scenes import Scenes, make_scenes, sample_scenes, scene_attributes
from .images import object_masks, render_images, render_video
from .audio import LOUDNESS, PITCH_HZ, TIMBRE, TREMOLO_HZ, log_mel, render_audio
from .text import SPEC_WIDTH, captions, class_prompts, describe, matches, swap_captions
from .tokenizer import SPECIALS, Tokenizer
from .dataset import (build_columns, config_of, default_size, images_float, load_world, scenes_of,
                      split_scenes, tensors, world_config)
from .camera import new_camera

__all__ = [
    "SHAPES", "COLOURS", "SIZES", "POSITIONS", "MOTIONS", "ATTRIBUTES", "RGB", "SYNONYMS",
    "TEMPLATES", "RELATIONS", "NOUNS", "PARTIALS", "NOVEL_PAIRS", "BASE_SHAPES", "NOVEL_SHAPES",
    "SPLITS", "SPLIT_SEEDS", "MODALITIES",
    "Scenes", "make_scenes", "sample_scenes", "scene_attributes",
    "render_images", "render_video", "object_masks",
    "PITCH_HZ", "TIMBRE", "LOUDNESS", "TREMOLO_HZ", "render_audio", "log_mel",
    "SPEC_WIDTH", "captions", "describe", "swap_captions", "matches", "class_prompts",
    "SPECIALS", "Tokenizer",
    "world_config", "default_size", "split_scenes", "build_columns", "load_world", "config_of",
    "tensors", "images_float", "scenes_of",
    "new_camera",
]
