"""Build the course's shared trained pieces into the cache ahead of time.

    python -m scripts.warm_cache          # every shared piece, for the current profile and seed
    python -m scripts.warm_cache --list   # what it would build

Binder's postBuild runs this inside the image build: what it writes under the home folder
(``~/.cache/tutorlib``) ships with the image, so a student's first session starts with the
course mini-CLIP, its data, lesson 05's world, backbones and token features, and lesson 08's
SimCLR encoder already built. The models themselves come from the package's shipped files
(``tutorlib.core.shipped``, copied on import); the data and features are computed here. A lesson's
own variations (another temperature, another seed) still build on first use, as anywhere.
"""
from __future__ import annotations

import argparse
import sys
import time


def pieces() -> list[tuple[str, callable]]:
    """``(what, build)`` for each shared piece, in the order the lessons first need them."""
    from tutorlib.zoo import pretrained, selfsup, unimodal

    def lesson05_features():
        for split in ("train", "test"):
            ds = unimodal.lesson_world(split)
            for m in ("image", "audio", "video", "text"):
                unimodal.token_features(m, ds, progress=False)
    return [
        ("the course mini-CLIP (lessons 01-04, 07)", lambda: pretrained.mini_clip(progress=False)),
        ("its training and test data", lambda: [pretrained.training_data(s) for s in ("train", "test")]),
        ("lesson 05's world", lambda: [unimodal.lesson_world(s) for s in ("train", "test")]),
        ("lesson 05's unimodal backbones", lambda: [unimodal.backbone(m, progress=False) for m in ("image", "audio", "video")]),
        ("lesson 05's token features", lesson05_features),
        ("lesson 08's SimCLR image encoder", lambda: selfsup.encoder(progress=False)),
    ]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--list", action="store_true", help="print what would be built, build nothing")
    args = ap.parse_args(argv)
    import tutorlib
    print(f"profile {tutorlib.profile()}, seed {tutorlib.get_seed()}")
    for what, build in pieces():
        if args.list:
            print(f"  {what}")
            continue
        start = time.perf_counter()
        build()
        print(f"  {what}: {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
