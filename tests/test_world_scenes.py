"""tutorlib.world.scenes (scenes: seeded sampling (the whole world is byte-identical for one seed), indexing, make_scenes, the split rules)."""
import pytest
import torch

from tutorlib import world


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


def test_sample_scenes_rules():
    sc = world.sample_scenes(500, seed=2)
    for s, c in world.NOVEL_PAIRS:
        for slot in (0, 1):
            assert not ((sc.shape[:, slot] == s) & (sc.colour[:, slot] == c)).any()
    sc = world.sample_scenes(200, seed=2, shapes=(1, 4), two_object_frac=0.0)
    assert set(sc.shape[:, 0].tolist()) == {1, 4}
    assert (sc.shape[:, 1] == -1).all()


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
