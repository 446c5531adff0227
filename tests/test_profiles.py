"""tutorlib.core.profiles: every number that makes quick and full differ, in one frozen place."""
import dataclasses

import pytest

from tutorlib.core import profiles


def test_the_profiles_are_frozen_and_named():
    assert set(profiles.PROFILES) == {"quick", "full"}
    for name, p in profiles.PROFILES.items():
        assert p.name == name
        with pytest.raises(dataclasses.FrozenInstanceError):
            p.image_size = 1


def test_full_is_at_least_as_large_as_quick_in_every_size():
    quick, full = profiles.QUICK, profiles.FULL
    for f in dataclasses.fields(profiles.Profile):
        a, b = getattr(quick, f.name), getattr(full, f.name)
        if isinstance(a, (int, float)) and not isinstance(a, bool):
            assert b >= a, f"{f.name}: full {b} below quick {a}"


def test_objects_sit_on_the_patch_grid_in_both_profiles():
    for p in profiles.PROFILES.values():
        assert p.image_size % p.patch_size == 0 and (p.image_size // 4) % p.patch_size == 0


def test_replace_makes_a_copy_and_derived_sizes_follow():
    q = profiles.QUICK.replace(sample_rate=4000, duration=0.5, hop=100)
    assert profiles.QUICK.sample_rate == 8000 and q.sample_rate == 4000
    assert q.audio_samples == 2000 and q.audio_frames == 1 + 2000 // 100
    with pytest.raises(TypeError):
        profiles.QUICK.replace(no_such_setting=1)
