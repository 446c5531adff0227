"""The world as datasets: one explicit config per split, its columns, and a cached,
torch-formatted ``datasets.Dataset`` built from them (``load_world``)."""
from __future__ import annotations

import json

import numpy as np
import torch

from ..core import _validate
from ..core.runtime import get_seed, settings
from ..core.recipes import code_hash
from .audio import log_mel, render_audio
from .images import render_images, render_video
from .scenes import Scenes, sample_scenes
from .text import captions
from .vocabulary import BASE_SHAPES, MODALITIES, NOVEL_PAIRS, NOVEL_SHAPES, SPLITS, SPLIT_SEEDS


def world_config(split: str, n: int, modalities, seed: int, image_size: int | None = None,
                 two_object_frac: float | None = None) -> dict:
    """The full, explicit config a dataset is built (and cached) from: every number
    that changes its data, the profile's (``tutorlib.settings()``) included, and ``code``,
    a hash of the source that generates it (this module and all it imports): editing the
    caption grammar or a renderer makes a new world, and so new models trained on it."""
    _validate.one_of("split", split, SPLITS)
    _validate.positive_int("n", n)
    mods = (modalities,) if isinstance(modalities, str) else tuple(modalities)
    for m in mods:
        _validate.one_of("modalities", m, MODALITIES)
    if not mods:
        raise ValueError("modalities: got an empty list, expected some of " + str(MODALITIES))
    if two_object_frac is None:
        two_object_frac = 0.0 if split in ("base", "novel") else 0.3
    s, seed = settings(), get_seed(seed)
    size = s.image_size if image_size is None else _validate.positive_int("image_size", image_size)
    cfg = dict(split=split, n=n, modalities=sorted(set(mods)), seed=seed, image_size=size,
               two_object_frac=float(two_object_frac), code=code_hash(__name__))
    if "video" in mods:                 # only what the world's modalities read
        cfg.update(frames=s.video_frames)
    if "audio" in mods:
        cfg.update(sample_rate=s.sample_rate, duration=s.duration, n_fft=s.n_fft, hop=s.hop,
                   n_mels=s.n_mels)
    return cfg


def default_size(split: str) -> int:
    """Scenes in a split by default: the profile's ``train_scenes`` for train,
    ``eval_scenes`` for every other split."""
    _validate.one_of("split", split, SPLITS)
    return settings().train_scenes if split == "train" else settings().eval_scenes


def split_scenes(cfg: dict) -> Scenes:
    """The scenes of a split: disjoint seeds per split, and the design's held-out rules."""
    split, seed = cfg["split"], SPLIT_SEEDS[cfg["split"]] + 7919 * cfg["seed"]
    kw = dict(two_object_frac=cfg["two_object_frac"])
    if split == "compositions":
        kw.update(exclude_pairs=(), only_pairs=NOVEL_PAIRS)
    elif split == "base":
        kw.update(shapes=BASE_SHAPES)
    elif split == "novel":
        kw.update(shapes=NOVEL_SHAPES)
    return sample_scenes(cfg["n"], seed, **kw)


def build_columns(cfg: dict) -> dict[str, np.ndarray | list]:
    """Every column of a split as numpy arrays (or lists of strings)."""
    sc = split_scenes(cfg)
    cols: dict = {}
    for name in ("shape", "colour", "size", "position", "motion"):
        cols[name] = getattr(sc, name)[:, 0].numpy()
        cols[name + "2"] = getattr(sc, name)[:, 1].numpy()
    cols["n_objects"] = sc.n_objects.numpy()
    cols["scene_seed"] = sc.seed.numpy()
    held = cfg["split"] == "paraphrase"
    seed = SPLIT_SEEDS[cfg["split"]] + cfg["seed"]
    cols["caption"], spec = captions(sc, seed, style="full", held_out=held)
    cols["caption_spec"] = spec.numpy()
    cols["partial"], pspec = captions(sc, seed + 1, style="partial", held_out=held)
    cols["partial_spec"] = pspec.numpy()
    mods = cfg["modalities"]
    if "image" in mods:
        cols["image"] = (render_images(sc, cfg["image_size"]) * 255).round().to(torch.uint8).numpy()
    if "audio" in mods:
        wave = render_audio(sc, cfg["sample_rate"], cfg["duration"])
        cols["audio"] = wave.numpy()
        cols["mel"] = log_mel(wave, cfg["sample_rate"], cfg["n_mels"], cfg["n_fft"],
                              cfg["hop"]).numpy()
    if "video" in mods:
        vid = render_video(sc, cfg["image_size"], cfg["frames"])
        cols["video"] = (vid * 255).round().to(torch.uint8).numpy()
    return cols


def _arrow_column(x):
    import pyarrow as pa
    from datasets.features.features import (Array2DExtensionType, Array3DExtensionType,
                                            Array4DExtensionType)
    if isinstance(x, list):
        return pa.array(x, type=pa.string())
    if x.ndim == 1:
        return pa.array(x)
    if x.ndim == 2 and x.shape[1] <= 16:
        return pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])
    arr = pa.array(np.ascontiguousarray(x).reshape(-1))
    for d in reversed(x.shape[1:]):
        arr = pa.ListArray.from_arrays(pa.array(np.arange(0, len(arr) + 1, d, dtype=np.int32)), arr)
    if x.ndim == 2:
        return arr
    ext = {3: Array2DExtensionType, 4: Array3DExtensionType, 5: Array4DExtensionType}[x.ndim]
    return pa.ExtensionArray.from_storage(ext(tuple(x.shape[1:]), str(x.dtype)), arr)


def _save_dataset(cfg: dict, folder) -> None:
    """Build the columns of ``cfg`` and save them as a ``datasets.Dataset`` in ``folder``."""
    import datasets
    import pyarrow as pa
    from ..core import cache
    table = pa.table({k: _arrow_column(v) for k, v in build_columns(cfg).items()})
    # the config is the identity: no hashing of the table
    ds = datasets.Dataset(table, info=datasets.DatasetInfo(description=json.dumps(cfg)),
                          fingerprint=cache.key(cfg))
    ds.save_to_disk(str(folder))


def load_world(split: str = "train", n: int | None = None, modalities=("image", "text"),
               seed: int | None = None, *, image_size: int | None = None,
               two_object_frac: float | None = None, progress: bool = True):
    """One split of the world as a torch-formatted ``datasets.Dataset``, cached on disk.

    Splits: ``train``/``val``/``test`` (disjoint seeds); ``compositions`` (shape-colour
    pairs never in the other splits); ``base``/``novel`` (single objects whose shapes
    are the first / last three); ``paraphrase`` (test-like scenes captioned with
    held-out synonyms and templates). Modalities: any of image, text, audio, video.
    ``n`` defaults to the profile's ``train_scenes`` for train, ``eval_scenes`` otherwise.

    Columns: attribute indices (``shape``, ``colour``, ..., ``shape2``..., -1 when absent),
    ``caption``/``caption_spec``, ``partial``/``partial_spec``, and per modality ``image``
    ``[3, H, W]`` uint8, ``audio`` ``[L]`` and ``mel`` ``[M, T]`` floats, ``video``
    ``[T, 3, H, W]`` uint8. Same config and seed give byte-identical data.
    """
    import datasets
    from ..core import cache

    n = default_size(split) if n is None else n
    cfg = world_config(split, n, modalities, seed, image_size, two_object_frac)
    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bar()
    try:
        folder = cache.cached_folder(f"world-{split}-{cache.key(cfg)}",
                                     lambda f: _save_dataset(cfg, f))
        ds = datasets.load_from_disk(str(folder))
    finally:
        if was_enabled and progress:
            datasets.enable_progress_bar()
    return ds.with_format("torch")


def config_of(ds) -> dict:
    """The config a dataset from ``load_world`` was built from."""
    try:
        return json.loads(ds.info.description)
    except (AttributeError, TypeError, ValueError):
        raise ValueError("ds: expected a dataset made by tutorlib.world.load_world") from None


def tensors(ds, columns=None) -> dict[str, torch.Tensor]:
    """Whole columns of a ``load_world`` dataset as tensors, read straight from Arrow
    (fast, and images stay ``uint8``: use ``images_float`` per batch).

    Text columns come back as lists of strings.
    """
    import pyarrow as pa
    config_of(ds)
    names = (ds.column_names if columns is None
             else ([columns] if isinstance(columns, str) else list(columns)))
    out = {}
    for name in names:
        if name not in ds.column_names:
            raise ValueError(f"columns: got {name!r}, expected one of {ds.column_names}")
        col = ds.data.column(name).combine_chunks()
        if col.type == "string":
            out[name] = col.to_pylist()
            continue
        feat = ds.features[name]
        shape = getattr(feat, "shape", None) or ((feat.length,) if hasattr(feat, "length") else ())
        if hasattr(col, "storage"):
            col = col.storage
        while pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type):
            col = col.flatten()
        arr = col.to_numpy(zero_copy_only=False)
        out[name] = torch.from_numpy(
            np.array(arr).reshape((len(ds),) + tuple(s for s in shape if s)))
    return out


def images_float(x: torch.Tensor) -> torch.Tensor:
    """Integer images or videos (0..255, as stored) to floats in ``[0, 1]``; floats pass through."""
    _validate.tensor("x", x, None, floating=False)
    return x.float() if x.is_floating_point() else x.float() / 255


def scenes_of(ds) -> Scenes:
    """The ``Scenes`` behind a ``load_world`` dataset (to re-render or caption them)."""
    t = tensors(ds, ["shape", "colour", "size", "position", "motion", "shape2", "colour2",
                     "size2", "position2", "motion2", "scene_seed"])
    return Scenes(*[torch.stack([t[a], t[a + "2"]], 1).long()
                    for a in ("shape", "colour", "size", "position", "motion")],
                  seed=t["scene_seed"].long())
