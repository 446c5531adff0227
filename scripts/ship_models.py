"""Retrain the shipped models (``tutorlib/shipped/``) from an empty cache: ``make models``.

    python -m scripts.ship_models            # retrain, replace the shipped files, print their sizes
    python -m scripts.ship_models --check    # which shipped files match what the code derives now

The models are the trained-once pieces every lesson shares, in the ``quick`` profile under
seed 0: the course mini-CLIP, lesson 05's image, audio and video backbones, lesson 08's SimCLR
encoder. They are trained in a fresh process with an empty cache, the shipped files turned off
(``TUTORLIB_SHIPPED=0``) and one thread (the test runner's, so CI's models and the shipped
ones are the same numbers), then copied under their cache names. Run it after any change to
the code behind a recipe: ``tests/test_shipped.py`` fails until you do.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "tutorlib" / "shipped"
LIMIT_MB = 20
ENV = {"TUTORLIB_PROFILE": "quick", "TUTORLIB_SEED": "0", "TUTORLIB_SHIPPED": "0",
       "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
_BUILD = """
from tutorlib.zoo import pretrained, selfsup, unimodal
pretrained.mini_clip(progress=False)
for m in ("image", "audio", "video"):
    unimodal.backbone(m, progress=False)
selfsup.encoder(progress=False)
"""
_NAMES = """
from tutorlib.zoo import pretrained, selfsup, unimodal
print(pretrained.recipe().entry(), selfsup.recipe().entry(), *(unimodal.recipe(m).entry() for m in ("image", "audio", "video")))
"""


def expected_names() -> list[str]:
    """The cache names of the shipped models as the current code derives them (``quick``,
    seed 0), computed in a fresh process so that the caller's environment does not matter."""
    out = subprocess.run([sys.executable, "-c", _NAMES], cwd=ROOT, check=True, capture_output=True, text=True,
                         env={**os.environ, **ENV})
    return sorted(out.stdout.split())


def check() -> list[str]:
    """What is wrong with the shipped folder: missing, stale or extra files (empty: nothing)."""
    want, have = set(expected_names()), {p.name for p in FOLDER.glob("*.safetensors")}
    return ([f"missing: {n}" for n in sorted(want - have)] +
            [f"stale or extra: {n}" for n in sorted(have - want)])


def ship() -> None:
    with tempfile.TemporaryDirectory(prefix="tutorlib-ship-") as cache:
        subprocess.run([sys.executable, "-c", _BUILD], cwd=ROOT, check=True,
                       env={**os.environ, **ENV, "TUTORLIB_CACHE": cache})
        names = expected_names()
        missing = [n for n in names if not (Path(cache) / n).exists()]
        if missing:
            raise SystemExit(f"the build did not write {missing}: are the names derived the same way?")
        FOLDER.mkdir(exist_ok=True)
        for old in FOLDER.glob("*.safetensors"):
            old.unlink()
        for n in names:
            shutil.copyfile(Path(cache) / n, FOLDER / n)
    sizes = {p.name: p.stat().st_size / 1e6 for p in sorted(FOLDER.glob("*.safetensors"))}
    for n, mb in sizes.items():
        print(f"  {n:50s} {mb:6.2f} MB")
    total = sum(sizes.values())
    print(f"  {'all':50s} {total:6.2f} MB (limit {LIMIT_MB} MB)")
    if total > LIMIT_MB:
        raise SystemExit(f"the shipped models take {total:.1f} MB, over the {LIMIT_MB} MB limit")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only report missing or stale files")
    args = ap.parse_args(argv)
    if args.check:
        problems = check()
        print("\n".join(problems) or "every shipped model matches its recipe")
        return 1 if problems else 0
    ship()
    return 0


if __name__ == "__main__":
    sys.exit(main())
