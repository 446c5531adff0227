"""tutorlib.core.recipes: an artefact's cache key follows its settings, its inputs and the code that
builds it, so no version number is bumped by hand and no stale artefact is ever served."""
import shutil

import pytest

from tutorlib.core import cache, profiles, recipes
from tutorlib.zoo import pretrained, selfsup, unimodal
from tutorlib import world


def keys() -> dict[str, str]:
    """The key of every trained-once artefact of the course, and of one world."""
    return {"world": cache.key(world.world_config("train", 100, ("image", "text"), 0)),
            "mini-clip": pretrained.recipe().key,
            **{f"unimodal-{m}": unimodal.recipe(m).key for m in unimodal.BACKBONES},
            "simclr": selfsup.recipe().key}


MODELS = {"mini-clip", "unimodal-image", "unimodal-audio", "unimodal-video", "simclr"}


@pytest.fixture
def source(tmp_path, monkeypatch):
    """A copy of tutorlib's source that the keys are computed from; ``edit(file, text)``
    appends ``text`` to one of its files."""
    monkeypatch.setenv("TUTORLIB_PROFILE", "quick")
    copy = tmp_path / "tutorlib"
    shutil.copytree(recipes.ROOT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(recipes, "ROOT", copy)

    def edit(file: str, text: str):
        with open(copy / file, "a", encoding="utf-8") as f:
            f.write(text)
        recipes._parsed.cache_clear()           # an edit within the file clock's tick is seen too
    return edit


def changed(before: dict, after: dict) -> set[str]:
    return {k for k in before if before[k] != after[k]}


@pytest.mark.parametrize("file", ["world/text.py", "world/vocabulary.py", "world/images.py",
                                  "world/scenes.py"])
def test_editing_the_world_changes_the_world_and_every_model_trained_on_it(source, file):
    before = keys()
    assert keys() == before                                   # stable
    source(file, "\n_EDITED = 1\n")
    assert changed(before, keys()) == {"world"} | MODELS


def test_editing_a_tower_changes_the_models_but_not_the_world(source):
    before = keys()
    source("models/text.py", "\n_EDITED = 1\n")
    assert changed(before, keys()) == MODELS


def test_editing_the_loss_changes_only_the_models_that_train_with_it(source):
    before = keys()
    source("objectives/losses.py", "\n_EDITED = 1\n")
    assert changed(before, keys()) == {"mini-clip"}         # the backbones and SimCLR do not use it
    source("zoo/selfsup.py", "\n_EDITED = 1\n")
    assert changed(before, keys()) == {"mini-clip", "simclr"}


def test_comments_and_docstrings_change_no_key(source):
    before = keys()
    source("world/text.py", "\n# a comment\n\n\ndef _helper():\n    '''A docstring.'''\n")
    after = keys()
    assert after["world"] != before["world"]                  # a new function is new code
    source("world/text.py", "    # another comment\n")
    assert keys() == after
    source("world/text.py", "\n'''A docstring of nothing.'''\n")
    assert keys() != after                                    # a bare string is not a docstring


@pytest.mark.parametrize("field, expected", [
    ("clip_steps", {"mini-clip"}),
    ("clip_batch_size", {"mini-clip"}),
    ("embed_dim", {"mini-clip"}),
    ("train_scenes", {"mini-clip"}),                          # the world it trains on
    ("backbone_steps", {"unimodal-image", "unimodal-audio", "unimodal-video"}),
    ("modality_train_scenes", {"unimodal-image", "unimodal-audio", "unimodal-video"}),
    ("simclr_steps", {"simclr"}),
    ("simclr_scenes", {"simclr"}),
    ("hop", {"unimodal-image", "unimodal-audio", "unimodal-video"}),   # an image-text world: no sound
    ("video_frames", {"unimodal-image", "unimodal-audio", "unimodal-video"}),
    ("image_size", {"world"} | MODELS),
    ("patch_size", MODELS),
    ("finetune_scenes", set()),
])
def test_a_setting_changes_exactly_the_keys_that_depend_on_it(monkeypatch, field, expected):
    monkeypatch.setenv("TUTORLIB_PROFILE", "quick")
    before = keys()
    monkeypatch.setitem(profiles.PROFILES, "quick",
                        profiles.QUICK.replace(**{field: 2 * getattr(profiles.QUICK, field)}))
    assert changed(before, keys()) == expected


def test_the_seed_changes_the_models_but_not_their_world(monkeypatch):
    monkeypatch.setenv("TUTORLIB_SEED", "0")
    before = keys()
    monkeypatch.setenv("TUTORLIB_SEED", "1")
    assert changed(before, keys()) == MODELS


def test_modules_behind_follows_imports_inside_functions_too():
    assert "tutorlib.training.train" in recipes.modules_behind("tutorlib.objectives.binding")   # imported in fit_joint
    behind = recipes.modules_behind("tutorlib.world.scenes")
    assert "tutorlib.world.vocabulary" in behind and "tutorlib.world.text" not in behind  # no cycle
    assert "tutorlib.world.tokenizer" in recipes.modules_behind("tutorlib.zoo.pretrained.training")
    assert "tutorlib.course.plots" not in recipes.modules_behind("tutorlib.zoo.pretrained.training")


def test_the_towers_do_not_import_the_world_nor_the_real_clip_adapter():
    """A tower's code (and so every model key) depends on the towers alone: not on the world's
    generator, and not on the Hugging Face adapter, which is imported on its own."""
    behind = recipes.modules_behind("tutorlib.models")
    assert not [m for m in behind if m.startswith("tutorlib.world")], behind
    assert "tutorlib.models.hf_clip" not in behind


def test_a_recipe_reads_like_its_values_and_is_frozen():
    r = pretrained.recipe(steps=3)
    assert r["steps"] == 3 and dict(r)["steps"] == 3 and "lr" in r
    assert r.entry().startswith("mini-clip-") and r.entry().endswith(".safetensors")
    with pytest.raises(TypeError):
        r.values["steps"] = 4
    assert r.replace(steps=4)["steps"] == 4 and r.replace(steps=4).key != r.key
    assert r.replace(steps=3).key == r.key


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="^overrides: got unknown names"):
        pretrained.recipe().replace(stpes=3)
    with pytest.raises(ValueError, match="^kind:"):
        recipes.Recipe("", {})
    with pytest.raises(ValueError, match="^values:"):
        recipes.Recipe("x", [1, 2])
    with pytest.raises(ValueError, match="^modules: got 'tutorlib.nothing'"):
        recipes.Recipe("x", {}, code=("tutorlib.nothing",))
    with pytest.raises(ValueError, match="^modules: got 'numpy'"):
        recipes.code_hash("numpy")
    with pytest.raises(ValueError, match="^overrides: got \\['steps'\\] beside a recipe r"):
        pretrained.train_mini_clip(r=pretrained.recipe(), steps=3)
    with pytest.raises(ValueError, match="^r: got dict"):
        pretrained.train_mini_clip(r={"steps": 3})
