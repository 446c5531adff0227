"""tutorlib.world: the procedural world, its rendering invariants, captions and splits."""
import pytest
import torch

from tutorlib.core import cache, profiles
from tutorlib import world
from tutorlib.world import COLOURS, SHAPES, Scenes


def _mask(img, colour, tol=0.06):
    """Pixels of ``img`` [3, H, W] within ``tol`` of RGB[colour] in every channel."""
    return (img - world.RGB[COLOURS.index(colour)][:, None, None]).abs().amax(0) < tol


def _centroid(mask):
    ys, xs = torch.nonzero(mask, as_tuple=True)
    assert len(xs) > 0, "object not found in the image"
    return xs.float().mean().item() + 0.5, ys.float().mean().item() + 0.5   # pixel centres


@pytest.fixture(scope="module")
def world_cache(tmp_path_factory):
    """One cache folder for the whole module (load_world is the slow part)."""
    mp = pytest.MonkeyPatch()
    path = tmp_path_factory.mktemp("world-cache")
    mp.setenv("TUTORLIB_CACHE", str(path))
    yield path
    mp.undo()


# --------------------------------------------------------------------------- determinism
def test_same_seed_byte_identical():
    a, b = world.sample_scenes(40, seed=3), world.sample_scenes(40, seed=3)
    for f in ("shape", "colour", "size", "position", "motion", "seed"):
        assert torch.equal(getattr(a, f), getattr(b, f))
    assert torch.equal(world.render_images(a), world.render_images(b))
    assert torch.equal(world.render_audio(a), world.render_audio(b))
    assert torch.equal(world.render_video(a), world.render_video(b))
    assert world.captions(a, seed=1)[0] == world.captions(b, seed=1)[0]
    assert torch.equal(world.captions(a, seed=1)[1], world.captions(b, seed=1)[1])


def test_different_seeds_differ():
    a, b = world.sample_scenes(40, seed=3), world.sample_scenes(40, seed=4)
    assert not torch.equal(a.shape, b.shape) or not torch.equal(a.colour, b.colour)
    assert not torch.equal(world.render_images(a), world.render_images(b))
    assert not torch.equal(world.render_audio(a), world.render_audio(b))
    assert world.captions(a, seed=1)[0] != world.captions(b, seed=1)[0]
    assert world.captions(a, seed=1)[0] != world.captions(a, seed=2)[0]


def test_scene_renders_the_same_in_any_batch():
    sc = world.sample_scenes(12, seed=8)
    whole = world.render_images(sc)
    alone = torch.cat([world.render_images(sc[i]) for i in range(len(sc))])
    assert torch.allclose(whole, alone, atol=1e-6)
    chunked = world.render_images(sc, chunk=5)
    assert torch.allclose(whole, chunked, atol=1e-6)


def test_scenes_indexing_and_n_objects():
    sc = world.sample_scenes(30, seed=0, two_object_frac=0.5)
    assert len(sc) == 30 and len(sc[3]) == 1 and len(sc[2:7]) == 5
    assert torch.equal(sc.n_objects, 1 + (sc.shape[:, 1] >= 0).long())
    assert set(sc.n_objects.tolist()) == {1, 2}
    one = sc.n_objects == 1
    for f in ("shape", "colour", "size", "position", "motion"):
        assert (getattr(sc, f)[one, 1] == -1).all()
    two = ~one
    assert (sc.position[two, 0] != sc.position[two, 1]).all()   # different grid cells


def test_scenes_negative_index():
    sc = world.sample_scenes(5, seed=0)
    last = sc[-1]
    assert len(last) == 1
    assert torch.equal(last.shape, sc.shape[4:5])


def test_make_scenes_names_and_indices():
    a = world.make_scenes("star", "red", "small", "top left", "up", seed=3)
    b = world.make_scenes(5, 0, 0, 0, 3, seed=3)
    for f in ("shape", "colour", "size", "position", "motion", "seed"):
        assert torch.equal(getattr(a, f), getattr(b, f))
    assert a.shape.tolist() == [[5, -1]] and a.motion.tolist() == [[3, -1]]
    assert world.describe(a) == "a small red star in the top left"


# --------------------------------------------------------------------------- images
def test_render_images_shape_and_range():
    sc = world.sample_scenes(16, seed=1)
    im = world.render_images(sc)
    assert im.shape == (16, 3, 32, 32)          # quick profile
    assert im.dtype == torch.float32
    assert float(im.min()) >= 0.0 and float(im.max()) <= 1.0
    assert world.render_images(sc, 48).shape == (16, 3, 48, 48)


@pytest.mark.parametrize("shape", SHAPES)
def test_centre_pixel_has_the_named_colour(shape):
    for colour in COLOURS:
        img = world.render_images(world.make_scenes(shape, colour, "large", "center", seed=11))[0]
        centre = img[:, 16, 16]
        assert torch.allclose(centre, world.RGB[COLOURS.index(colour)], atol=0.06), (shape, colour)
        for y, x in ((0, 0), (0, 31), (31, 0), (31, 31)):
            corner = img[:, y, x]
            assert float(corner.max() - corner.min()) < 0.05, "background is not grey"
            assert 0.2 < float(corner.mean()) < 0.6


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("shape", SHAPES)
def test_objects_sit_on_the_patch_grid(shape, size):
    # grid cells' centres are at H/4, H/2, 3H/4: on patch corners for 8x8 patches at 32 px
    k = size / 32
    tol = k * (1.2 if shape == "triangle" else 0.3)      # a triangle's centroid sits lower
    for pos, (cx, cy) in {"top left": (8, 8), "center": (16, 16), "bottom right": (24, 24),
                          "top right": (24, 8), "left": (8, 16)}.items():
        img = world.render_images(world.make_scenes(shape, "blue", "large", pos), size)[0]
        x, y = _centroid(_mask(img, "blue"))
        assert abs(x - k * cx) <= tol and abs(y - k * cy) <= tol, (shape, pos, x, y)


def test_large_objects_cover_more_pixels():
    for shape in SHAPES:
        big = _mask(world.render_images(world.make_scenes(shape, "green", "large"))[0], "green").sum()
        small = _mask(world.render_images(world.make_scenes(shape, "green", "small"))[0], "green").sum()
        assert big > 1.5 * small > 0


def test_shapes_look_different():
    imgs = world.render_images(Scenes(
        shape=torch.tensor([[s, -1] for s in range(6)]), colour=torch.zeros(6, 2, dtype=torch.long),
        size=torch.ones(6, 2, dtype=torch.long), position=torch.full((6, 2), 4),
        motion=torch.zeros(6, 2, dtype=torch.long), seed=torch.zeros(6, dtype=torch.long)))
    masks = torch.stack([_mask(im, "red") for im in imgs]).flatten(1).float()
    for i in range(6):
        for j in range(i + 1, 6):
            assert (masks[i] != masks[j]).sum() > 10, (SHAPES[i], SHAPES[j])


# --------------------------------------------------------------------------- audio
def test_pitch_follows_colour_full_profile(monkeypatch):
    monkeypatch.setenv("TUTORLIB_PROFILE", "full")
    for ci, colour in enumerate(COLOURS):
        wave = world.render_audio(world.make_scenes("circle", colour, "small", "bottom"))[0]
        assert wave.shape == (8000,)                     # full: 0.5 s at 16 kHz
        spec = torch.fft.rfft(wave.double(), n=1 << 18).abs()
        f = spec.argmax().item() * 16000 / (1 << 18)
        assert abs(f - world.PITCH_HZ[ci].item()) < 3.0, (colour, f)


@pytest.mark.parametrize("position", ["top left", "center", "bottom right"])
def test_pitch_follows_colour(position):
    sr = 8000
    for ci, colour in enumerate(COLOURS):
        wave = world.render_audio(world.make_scenes("circle", colour, "large", position))[0]
        assert wave.shape == (2000,)                     # quick: 0.25 s at 8 kHz
        n_fft = 1 << 17                                   # zero-padded: fine frequency grid
        spec = torch.fft.rfft(wave.double(), n=n_fft).abs()
        f = spec.argmax().item() * sr / n_fft
        assert abs(f - world.PITCH_HZ[ci].item()) < 3.0, (colour, f)


def test_louder_when_larger():
    for shape in SHAPES:
        for colour in ("red", "yellow"):
            rms = [world.render_audio(world.make_scenes(shape, colour, size))[0].pow(2).mean().sqrt()
                   for size in ("small", "large")]
            assert rms[1] > 1.5 * rms[0] > 0


def test_audio_is_bounded_and_silent_nowhere_else():
    sc = world.sample_scenes(20, seed=2)
    wave = world.render_audio(sc)
    assert wave.shape == (20, 2000)
    assert torch.isfinite(wave).all()
    assert wave.abs().max() <= 2.0
    assert (wave.abs().amax(1) > 0.01).all()


def test_log_mel_shape_and_finite():
    wave = world.render_audio(world.sample_scenes(6, seed=0))
    mel = world.log_mel(wave)
    assert mel.shape[:2] == (6, 32) and mel.ndim == 3
    assert mel.shape[2] == 1 + 2000 // 64
    assert torch.isfinite(mel).all()
    assert world.log_mel(wave, n_mels=16).shape[1] == 16


def test_log_mel_peak_band_follows_pitch():
    waves = torch.cat([world.render_audio(world.make_scenes("circle", c, "large", "top left"))
                       for c in COLOURS])
    mel = world.log_mel(waves)
    peak_band = mel.mean(2).argmax(1)
    assert (peak_band[1:] >= peak_band[:-1]).all()       # higher pitch, higher band
    assert peak_band[-1] > peak_band[0]


# --------------------------------------------------------------------------- video
def test_render_video_shape_and_motion():
    vid = world.render_video(world.sample_scenes(3, seed=0))
    assert vid.shape == (3, 4, 3, 32, 32)
    assert world.render_video(world.sample_scenes(2), frames=6).shape == (2, 6, 3, 32, 32)

    def track(motion):
        v = world.render_video(world.make_scenes("circle", "red", "small", "center", motion))[0]
        return [_centroid(_mask(v[t], "red")) for t in range(v.shape[0])]

    right = track("right")
    xs = [x for x, _ in right]
    assert all(b > a for a, b in zip(xs, xs[1:])), xs
    assert max(abs(y - right[0][1]) for _, y in right) < 0.5
    still = track("still")
    assert max(abs(x - still[0][0]) + abs(y - still[0][1]) for x, y in still) < 0.5
    left = [x for x, _ in track("left")]
    assert all(b < a for a, b in zip(left, left[1:]))
    down = [y for _, y in track("down")]
    assert all(b > a for a, b in zip(down, down[1:]))     # image rows grow downwards
    up = [y for _, y in track("up")]
    assert all(b < a for a, b in zip(up, up[1:]))


def test_video_first_frame_is_the_image():
    sc = world.sample_scenes(5, seed=9)
    assert torch.equal(world.render_video(sc)[:, 0], world.render_images(sc))


# --------------------------------------------------------------------------- captions
@pytest.mark.parametrize("style", ["full", "partial", "canonical"])
@pytest.mark.parametrize("held_out", [False, True])
def test_caption_spec_matches_its_scene(style, held_out):
    sc = world.sample_scenes(300, seed=4)
    texts, spec = world.captions(sc, seed=2, style=style, held_out=held_out)
    assert len(texts) == 300 and spec.shape == (300, world.SPEC_WIDTH)
    m = world.matches(world.scene_attributes(sc), spec)
    assert m.shape == (300, 300)
    assert m.diagonal().all()
    assert not m.all()                              # captions do discriminate


def test_full_captions_name_every_attribute():
    sc = world.sample_scenes(200, seed=5, two_object_frac=0.0)
    texts, spec = world.captions(sc, seed=0, style="full")
    assert (spec[:, :4] >= 0).all() and (spec[:, 4:] <= 0).all()
    tok = world.Tokenizer()
    for t, s in zip(texts, spec.tolist()):
        words = set(tok.words(t))
        shape_words = set(world.SYNONYMS[SHAPES[s[0]]][0])
        colour_words = set(world.SYNONYMS[COLOURS[s[1]]][0])
        assert words & shape_words and words & colour_words, t


def _training_synonyms():
    words = set()
    for train, _ in world.SYNONYMS.values():
        words.update(train)
    return words - {"left", "right"}                 # these are their own paraphrases


@pytest.mark.parametrize("style", ["full", "partial"])
def test_held_out_captions_use_held_out_words(style):
    sc = world.sample_scenes(300, seed=6)
    texts, spec = world.captions(sc, seed=1, style=style, held_out=True)
    tok = world.Tokenizer()
    banned = _training_synonyms()
    for t, s in zip(texts, spec.tolist()):
        words = set(tok.words(t))
        assert not words & banned, t
        if s[1] >= 0:           # the colour is named: with its held-out word, never a training one
            train, held = world.SYNONYMS[COLOURS[s[1]]]
            assert not words & set(train), t
            assert words & set(held), t


def test_training_captions_use_no_held_out_words():
    sc = world.sample_scenes(300, seed=6)
    held = set()
    for train, test in world.SYNONYMS.values():
        held.update(w for w in test if w not in train)
    held.update(world.NOUNS[1])
    tok = world.Tokenizer()
    for style in ("full", "partial", "canonical"):
        for t in world.captions(sc, seed=1, style=style)[0]:
            assert not set(tok.words(t)) & held, t
            assert tok.unk_id not in tok.encode(t), t


def test_tokenizer_unknowns_and_round_trip():
    tok = world.Tokenizer()
    assert tok.encode("scarlet")[0] == tok.unk_id
    assert tok.encode("pentagram lavender")[0] == tok.unk_id
    for w in ("red", "crimson", "circle", "left", "of", "photo", "an"):
        assert tok.encode(w) != [tok.unk_id], w
    ids = tok(["a red circle", "a large blue square left of a small red star"])
    assert ids.shape == (2, tok.context_length) and ids.dtype == torch.long
    assert ids[0, 0] == tok.bos_id and ids[0, 4] == tok.eos_id and (ids[0, 5:] == tok.pad_id).all()
    assert tok.decode(ids[1]) == "a large blue square left of a small red star"
    assert tok.decode(tok(["A Scarlet Dot"])[0]) == "a <unk> <unk>"


def test_tokenizer_bad_input():
    tok = world.Tokenizer(context_length=5)
    with pytest.raises(ValueError, match=r"^texts\[0\]:"):
        tok(["one two three four five six"])
    with pytest.raises(ValueError, match=r"^texts:"):
        tok([])
    with pytest.raises(ValueError, match=r"^text:"):
        tok.encode(3)
    with pytest.raises(ValueError, match=r"^context_length:"):
        world.Tokenizer(context_length=0)


def _two_object(colours, positions, shapes=(0, 1)):
    n = len(colours)
    return Scenes(shape=torch.tensor([list(shapes)] * n), colour=torch.tensor(colours),
                  size=torch.ones(n, 2, dtype=torch.long), position=torch.tensor(positions),
                  motion=torch.zeros(n, 2, dtype=torch.long), seed=torch.arange(n))


def test_matches_relational():
    left, right, top, bottom = 3, 5, 1, 7
    red, blue = 0, 2
    # "a red circle left of a blue square": shape, colour, size, position of A, of B, relation
    spec = torch.tensor([[0, red, -1, -1, 1, blue, -1, -1, 1]])
    sc = _two_object([[red, blue], [blue, red], [red, blue], [red, blue]],
                     [[left, right], [left, right], [right, left], [top, bottom]])
    m = world.matches(world.scene_attributes(sc), spec)[:, 0].tolist()
    assert m == [True, False, False, False]
    # the same caption said from B's side: "a blue square right of a red circle"
    flipped = torch.tensor([[1, blue, -1, -1, 0, red, -1, -1, 2]])
    assert world.matches(world.scene_attributes(sc), flipped)[:, 0].tolist() == m
    # object order in the scene must not matter
    sc_swapped = Scenes(shape=sc.shape.flip(1), colour=sc.colour.flip(1), size=sc.size,
                        position=sc.position.flip(1), motion=sc.motion, seed=sc.seed)
    assert world.matches(world.scene_attributes(sc_swapped), spec)[:, 0].tolist() == m
    # "above": red circle at top, blue square at bottom
    above = torch.tensor([[0, red, -1, -1, 1, blue, -1, -1, 3]])
    assert world.matches(world.scene_attributes(sc), above)[:, 0].tolist() == [False, False, False, True]
    # "and" needs both objects, anywhere
    both = torch.tensor([[0, red, -1, -1, 1, blue, -1, -1, 0]])
    assert world.matches(world.scene_attributes(sc), both)[:, 0].tolist() == [True, False, True, True]


def test_matches_canonical_relational_caption():
    sc = _two_object([[0, 2], [2, 0]], [[3, 5], [3, 5]])
    texts, spec = world.captions(sc, style="canonical")
    assert texts[0] == "a large red circle left of a large blue square"
    m = world.matches(world.scene_attributes(sc), spec)
    assert m.tolist() == [[True, False], [False, True]]


def test_matches_partial_and_one_object():
    sc = world.Scenes(**{f: torch.cat([getattr(world.make_scenes("circle", "red"), f),
                                       getattr(world.make_scenes("square", "red"), f)])
                         for f in ("shape", "colour", "size", "position", "motion", "seed")})
    a_red_thing = torch.tensor([[-1, 0, -1, -1, -1, -1, -1, -1, 0]])
    a_circle = torch.tensor([[0, -1, -1, -1, -1, -1, -1, -1, 0]])
    needs_two = torch.tensor([[0, 0, -1, -1, 1, 0, -1, -1, 0]])
    attrs = world.scene_attributes(sc)
    assert world.matches(attrs, a_red_thing)[:, 0].tolist() == [True, True]
    assert world.matches(attrs, a_circle)[:, 0].tolist() == [True, False]
    assert world.matches(attrs, needs_two)[:, 0].tolist() == [False, False]


def test_matches_bad_input():
    attrs = world.scene_attributes(world.sample_scenes(3))
    with pytest.raises(ValueError, match=r"^attrs, specs: got shapes \(3, 2, 4\) and \(3, 8\)"):
        world.matches(attrs, torch.zeros(3, 8, dtype=torch.long))
    with pytest.raises(ValueError, match=r"^attrs:"):
        world.matches(attrs[:, 0], torch.zeros(3, 9, dtype=torch.long))


def test_class_prompts_one_per_class_in_the_training_words():
    for attr in ("shape", "colour", "size", "position"):
        assert len(world.class_prompts(attr)) == len(world.ATTRIBUTES[attr])
    assert world.class_prompts("colour")[0] == "a red object"
    assert world.class_prompts("colour")[5] == "an orange object"
    assert world.class_prompts("shape")[:2] == ["a circle", "a square"]
    assert world.class_prompts("position")[0] == "an object in the top left"
    assert world.class_prompts("colour", held_out=True)[0] == "a scarlet item"
    tok = world.Tokenizer()
    for attr in ("shape", "colour", "size", "position"):
        assert tok.unk_id not in tok(world.class_prompts(attr)).flatten().tolist(), attr
    assert not hasattr(world, "prompts")          # renamed: tutorlib.methods.prompts is the lesson-03 module
    with pytest.raises(ValueError, match=r"^attribute:"):
        world.class_prompts("motion")


def test_swap_captions_swap_exactly_the_attribute_between_objects():
    scenes = world.sample_scenes(400, seed=3)
    true, swapped, valid = world.swap_captions(scenes, seed=1)
    assert valid.sum() > 50
    names = set(sum((w for w, _ in (world.SYNONYMS[c] for c in world.COLOURS)), []))
    for a, b, ok in zip(true, swapped, valid.tolist()):
        if not ok:
            continue
        diff = [(p, q) for p, q in zip(a.split(), b.split()) if p != q]
        assert len(a.split()) == len(b.split()) and len(diff) == 2
        assert all(p in names and q in names for p, q in diff)
    # the swapped caption is false of the scene, the true one true
    attrs = world.scene_attributes(scenes)
    spec_true = world.captions(scenes, 1)[1]
    assert world.matches(attrs, spec_true).diagonal().all()
    swapped_scenes = world.Scenes(**{k: getattr(scenes, k).clone() for k in scenes.__dataclass_fields__})
    swapped_scenes.colour[:] = scenes.colour.flip(1).where(scenes.shape[:, 1:2] >= 0, scenes.colour)
    spec_swap = world.captions(swapped_scenes, 1)[1]
    holds = world.matches(attrs, spec_swap).diagonal()
    assert not (holds & valid).any()            # every valid swap is false of its scene ...
    two = scenes.shape[:, 1] >= 0
    same_shape_and = two & (scenes.shape[:, 0] == scenes.shape[:, 1]) & (scenes.size[:, 0] == scenes.size[:, 1]) \
        & (spec_swap[:, 8] == 0) & (scenes.colour[:, 0] != scenes.colour[:, 1])
    assert same_shape_and.any() and not valid[same_shape_and].any()   # ... "a red star and a blue star" is no negative
    with pytest.raises(ValueError, match=r"^attribute:"):
        world.swap_captions(scenes, attribute="motion")


@pytest.mark.parametrize("attribute", ["shape", "colour", "size"])
def test_swap_captions_valid_is_the_same_in_any_chunking(attribute):
    # more than one chunk of 512 scenes: valid must be what one whole [N, N] match gives
    scenes = world.sample_scenes(1100, seed=5)
    true, swapped, valid = world.swap_captions(scenes, seed=2, attribute=attribute)
    assert len(true) == len(swapped) == len(valid) == 1100 and valid.dtype == torch.bool
    spec_swap = world.captions(world.Scenes(**{
        k: (getattr(scenes, k).flip(1).where(scenes.shape[:, 1:2] >= 0, getattr(scenes, k))
            if k == attribute else getattr(scenes, k)) for k in scenes.__dataclass_fields__}), 2)[1]
    still_true = world.matches(world.scene_attributes(scenes), spec_swap).diagonal()
    values = getattr(scenes, attribute)
    expected = (scenes.shape[:, 1] >= 0) & (values[:, 0] != values[:, 1]) & ~still_true
    assert torch.equal(valid, expected)


def test_swap_captions_of_no_scenes_and_one_object_scenes():
    empty = world.sample_scenes(4, seed=0)[0:0]
    true, swapped, valid = world.swap_captions(empty)
    assert true == [] and swapped == [] and valid.shape == (0,) and valid.dtype == torch.bool
    single = world.sample_scenes(20, seed=1, two_object_frac=0.0)
    true, swapped, valid = world.swap_captions(single, attribute="shape")
    assert true == swapped and not valid.any()     # nothing to swap between objects


# --------------------------------------------------------------------------- splits
def test_sample_scenes_rules():
    sc = world.sample_scenes(500, seed=2)
    for s, c in world.NOVEL_PAIRS:
        for slot in (0, 1):
            assert not ((sc.shape[:, slot] == s) & (sc.colour[:, slot] == c)).any()
    sc = world.sample_scenes(200, seed=2, shapes=(1, 4), two_object_frac=0.0)
    assert set(sc.shape[:, 0].tolist()) == {1, 4}
    assert (sc.shape[:, 1] == -1).all()


def test_split_compositions_and_train(world_cache):
    comp = world.tensors(world.load_world("compositions", n=200, progress=False))
    pairs0 = set(zip(comp["shape"].tolist(), comp["colour"].tolist()))
    assert pairs0 <= set(world.NOVEL_PAIRS)
    assert len(pairs0) == len(world.NOVEL_PAIRS)
    train = world.tensors(world.load_world("train", n=500, progress=False))
    novel = set(world.NOVEL_PAIRS)
    for s, c in (("shape", "colour"), ("shape2", "colour2")):
        got = set(zip(train[s].tolist(), train[c].tolist()))
        assert not got & novel
    assert (train["n_objects"] == 2).any()


@pytest.mark.parametrize("split, shapes", [("base", world.BASE_SHAPES), ("novel", world.NOVEL_SHAPES)])
def test_split_base_novel(world_cache, split, shapes):
    t = world.tensors(world.load_world(split, n=150, progress=False))
    assert set(t["shape"].tolist()) == set(shapes)
    assert (t["shape2"] == -1).all() and (t["n_objects"] == 1).all()


def test_split_paraphrase_uses_held_out_words(world_cache):
    t = world.tensors(world.load_world("paraphrase", n=100, progress=False), ["caption", "partial"])
    tok = world.Tokenizer()
    banned = _training_synonyms()
    for text in t["caption"] + t["partial"]:
        assert not set(tok.words(text)) & banned, text


def test_splits_are_disjoint(world_cache):
    seeds = {s: set(world.tensors(world.load_world(s, n=200, progress=False), "scene_seed")
                    ["scene_seed"].tolist()) for s in ("val", "test")}
    assert not seeds["val"] & seeds["test"]


def _entries(folder, prefix):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(prefix) and p.is_dir())


def test_load_world_caches_and_tensors(world_cache):
    before = _entries(world_cache, "world-val-")
    ds = world.load_world("val", n=300, seed=1, progress=False)
    ds2 = world.load_world("val", n=300, seed=1, progress=False)   # the same entry, read back
    assert len(_entries(world_cache, "world-val-")) == len(before) + 1
    a, b = world.tensors(ds), world.tensors(ds2)
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], list):
            assert a[k] == b[k]
        else:
            assert torch.equal(a[k], b[k])
    assert a["image"].shape == (300, 3, 32, 32) and a["image"].dtype == torch.uint8
    assert a["caption_spec"].shape == (300, 9) and a["caption_spec"].dtype == torch.int64
    assert a["shape"].shape == (300,)
    assert isinstance(a["caption"], list) and isinstance(a["caption"][0], str)
    assert world.config_of(ds)["n"] == 300
    # a different seed is a different dataset
    other = world.tensors(world.load_world("val", n=300, seed=2, progress=False), "image")["image"]
    assert not torch.equal(other, a["image"])


def test_load_world_all_modalities(world_cache):
    ds = world.load_world("test", n=40, modalities=("image", "text", "audio", "video"), progress=False)
    t = world.tensors(ds)
    assert t["image"].shape == (40, 3, 32, 32) and t["image"].dtype == torch.uint8
    assert t["audio"].shape == (40, 2000) and t["audio"].dtype == torch.float32
    assert t["mel"].shape == (40, 32, 1 + 2000 // 64) and torch.isfinite(t["mel"]).all()
    assert t["video"].shape == (40, 4, 3, 32, 32) and t["video"].dtype == torch.uint8
    sc = world.scenes_of(ds)
    assert torch.equal(world.render_audio(sc), t["audio"])
    assert torch.equal((world.render_video(sc) * 255).round().to(torch.uint8), t["video"])
    assert torch.equal(t["video"][:, 0], t["image"])


def test_scenes_of_rerenders_identical_images(world_cache):
    ds = world.load_world("train", n=500, progress=False)
    t = world.tensors(ds)
    sc = world.scenes_of(ds)
    assert len(sc) == 500
    again = (world.render_images(sc) * 255).round().to(torch.uint8)
    assert torch.equal(again, t["image"])
    texts, spec = world.captions(sc, world.SPLIT_SEEDS["train"], style="full")
    assert texts == t["caption"] and torch.equal(spec, t["caption_spec"])
    assert world.matches(world.scene_attributes(sc), t["partial_spec"]).diagonal().all()


def test_images_float():
    x = torch.tensor([[0, 255], [51, 102]], dtype=torch.uint8)
    assert torch.allclose(world.images_float(x), torch.tensor([[0.0, 1.0], [0.2, 0.4]]))
    f = torch.rand(2, 3)
    assert torch.equal(world.images_float(f), f)


def test_images_float_of_dataset_rows(world_cache):
    ds = world.load_world("train", n=500, progress=False)
    batch = world.images_float(ds[:8]["image"])
    assert float(batch.max()) <= 1.0
    assert torch.allclose(batch, world.images_float(world.tensors(ds, "image")["image"][:8]))


# --------------------------------------------------------------------------- bad input
def test_load_world_bad_input(world_cache):
    with pytest.raises(ValueError, match=r"^split:"):
        world.load_world("training", n=10)
    with pytest.raises(ValueError, match=r"^modalities:"):
        world.load_world("train", n=10, modalities=("image", "smell"))
    with pytest.raises(ValueError, match=r"^modalities:"):
        world.load_world("train", n=10, modalities=())
    for n in (0, -5, 2.5):
        with pytest.raises(ValueError, match=r"^n: got .*, expected a positive integer"):
            world.load_world("train", n=n)
    with pytest.raises(ValueError, match=r"^image_size:"):
        world.load_world("train", n=10, image_size=0)
    with pytest.raises(ValueError, match=r"^ds:"):
        world.config_of([1, 2, 3])
    ds = world.load_world("val", n=20, progress=False)
    with pytest.raises(ValueError, match=r"^columns:"):
        world.tensors(ds, ["image", "pixels"])
    with pytest.raises(ValueError, match=r"^ds:"):
        world.tensors({"image": [1]})


def test_render_bad_input():
    sc = world.sample_scenes(2)
    with pytest.raises(ValueError, match=r"^image_size:"):
        world.render_images(sc, image_size=0)
    with pytest.raises(ValueError, match=r"^image_size:"):
        world.render_images(sc, image_size=4)
    for fn in (world.render_images, world.render_audio, world.render_video):
        with pytest.raises(ValueError, match=r"^scenes:"):
            fn(torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"^scenes:"):
        world.captions(["a red circle"])
    with pytest.raises(ValueError, match=r"^style:"):
        world.captions(sc, style="poetic")
    with pytest.raises(ValueError, match=r"^frames:"):
        world.render_video(sc, frames=0)
    with pytest.raises(ValueError, match=r"^sample_rate:"):
        world.render_audio(sc, sample_rate=0)
    with pytest.raises(ValueError, match=r"^wave:"):
        world.log_mel(torch.zeros(100))


def test_make_scenes_bad_input():
    with pytest.raises(ValueError, match=r"^shape:"):
        world.make_scenes("hexagon", "red")
    with pytest.raises(ValueError, match=r"^colour:"):
        world.make_scenes("circle", "pink")
    with pytest.raises(ValueError, match=r"^size:"):
        world.make_scenes("circle", "red", "medium")
    with pytest.raises(ValueError, match=r"^position:"):
        world.make_scenes("circle", "red", "large", "middle")
    with pytest.raises(ValueError, match=r"^motion:"):
        world.make_scenes("circle", "red", motion="spin")
    with pytest.raises(ValueError, match=r"^shape:"):
        world.make_scenes(6, "red")
    with pytest.raises(ValueError, match=r"^colour:"):
        world.make_scenes("circle", -1)


def test_sample_scenes_bad_input():
    with pytest.raises(ValueError, match=r"^n: got .*, expected a positive integer"):
        world.sample_scenes(0)
    with pytest.raises(ValueError, match=r"^two_object_frac:"):
        world.sample_scenes(5, two_object_frac=1.5)
    with pytest.raises(ValueError, match=r"^shapes:"):
        world.sample_scenes(5, shapes=(7,))
    with pytest.raises(ValueError, match=r"^exclude_pairs:"):
        world.sample_scenes(5, shapes=(0,), exclude_pairs=[(0, c) for c in range(6)])


# --------------------------------------------------------------------------- profile settings
@pytest.fixture
def quick_profile(monkeypatch):
    """Set the quick profile's settings for one test: ``quick_profile(hop=32, ...)``."""
    monkeypatch.setenv("TUTORLIB_PROFILE", "quick")

    def use(**changes):
        monkeypatch.setitem(profiles.PROFILES, "quick", profiles.QUICK.replace(**changes))
    return use


def _world_key():
    return cache.key(world.world_config("train", 100, world.MODALITIES, 0))


@pytest.mark.parametrize("setting, value", [
    ("image_size", 40), ("sample_rate", 4000), ("duration", 0.3), ("hop", 32), ("n_fft", 128),
    ("video_frames", 3), ("n_mels", 16)])
def test_dataset_cache_key_changes_with_every_world_setting(quick_profile, setting, value):
    base = _world_key()
    assert base == _world_key()
    quick_profile(**{setting: value})
    assert world.world_config("train", 100, world.MODALITIES, 0)[
        "frames" if setting == "video_frames" else setting] == value
    assert _world_key() != base, setting


def test_dataset_cache_key_ignores_the_model_settings(quick_profile):
    base = _world_key()
    quick_profile(embed_dim=64, clip_steps=10, backbone_width=16)
    assert _world_key() == base


def test_defaults_read_the_profile_at_call_time(quick_profile):
    sc = world.sample_scenes(2, seed=0)
    quick_profile(image_size=40, video_frames=3, sample_rate=4000, duration=0.5, n_fft=128, hop=32,
                  n_mels=16)
    assert world.render_images(sc).shape == (2, 3, 40, 40)
    assert world.render_video(sc).shape == (2, 3, 3, 40, 40)
    wave = world.render_audio(sc)
    assert wave.shape == (2, 2000)
    assert world.log_mel(wave).shape == (2, 16, 1 + 2000 // 32)
    assert torch.equal(world.log_mel(wave), world.log_mel(wave, 4000, 16, 128, 32))


def test_build_columns_follows_the_config_not_the_profile(quick_profile):
    quick_profile(hop=32, n_fft=128, n_mels=16)
    cfg = world.world_config("test", 3, ("audio",), 0)
    quick_profile()                                    # back to the quick settings
    cols = world.build_columns(cfg)
    assert cols["mel"].shape == (3, 16, 1 + 2000 // 32)
    wave = torch.from_numpy(cols["audio"])
    assert torch.equal(torch.from_numpy(cols["mel"]), world.log_mel(wave, 8000, 16, 128, 32))


def test_load_world_default_sizes_come_from_the_profile(world_cache, quick_profile):
    quick_profile(train_scenes=24, eval_scenes=12)
    assert len(world.load_world("train", progress=False)) == 24
    assert len(world.load_world("val", progress=False)) == 12
    assert world.config_of(world.load_world("base", progress=False))["n"] == 12


def test_the_derived_audio_frame_count_is_what_log_mel_makes(monkeypatch):
    """``settings().audio_frames`` is computed, not typed: it must match the spectrogram
    that the audio tower reads, in both profiles."""
    from tutorlib.core import profiles
    from tutorlib import settings
    for name in ("quick", "full"):
        monkeypatch.setenv("TUTORLIB_PROFILE", name)
        wave = world.render_audio(world.sample_scenes(2, seed=0))
        assert world.log_mel(wave).shape[1:] == (settings().n_mels, settings().audio_frames)
        assert settings() is profiles.PROFILES[name]
