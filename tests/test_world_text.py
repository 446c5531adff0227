"""tutorlib.world.text (captions: what they assert, held-out words, matches, class prompts, swapped twins)."""
import pytest
import torch

from tutorlib import world
from tutorlib.world import COLOURS, SHAPES, Scenes


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


@pytest.mark.parametrize("style", ["full", "partial"])
def test_held_out_captions_use_held_out_words(style, training_synonyms):
    sc = world.sample_scenes(300, seed=6)
    texts, spec = world.captions(sc, seed=1, style=style, held_out=True)
    tok = world.Tokenizer()
    banned = training_synonyms
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


def test_relation_swap_flips_only_the_relation():
    sc = world.sample_scenes(100, seed=2, two_object_frac=1.0)
    true, swapped, valid = world.swap_captions(sc, attribute="position")
    assert valid.any() and not valid.all()
    for t, s, ok in zip(true, swapped, valid):
        if ok:
            a, b = t.split(), s.split()
            assert len(a) == len(b) and sum(u != v for u, v in zip(a, b)) == 1
            assert {u for u, v in zip(a, b) if u != v} | {v for u, v in zip(a, b) if u != v} in (
                {"left", "right"}, {"above", "below"})
    assert not any(" and " in t for t, ok in zip(true, valid) if ok), "a caption with no relation was counted"
