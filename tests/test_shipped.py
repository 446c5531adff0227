"""The shipped models: named as their recipes derive now (a stale file cannot ship), small,
safetensors only, and copied into a cache that lacks them, atomically, never over an entry."""
import pytest
from safetensors.torch import load_file

from scripts import ship_models
from tutorlib.core import shipped


def test_every_shipped_model_matches_its_recipe_and_the_folder_is_small():
    problems = ship_models.check()
    assert not problems, f"{problems}: run `make models` (python -m scripts.ship_models) and commit the result"
    files = shipped.files()
    assert {p.name for p in files} == set(ship_models.expected_names())
    assert sum(p.stat().st_size for p in files) < ship_models.LIMIT_MB * 1e6
    for p in files:
        assert p.suffix == ".safetensors" and any(k.startswith("module.") for k in load_file(str(p)))


def test_install_copies_what_the_cache_lacks_and_keeps_what_it_has(tmp_path):
    names = [p.name for p in shipped.files()]
    assert names, "no shipped models"
    kept = tmp_path / names[0]
    kept.write_bytes(b"the user's own entry")
    assert shipped.install(tmp_path) == names[1:]
    assert kept.read_bytes() == b"the user's own entry"                 # never overwritten
    assert all((tmp_path / n).read_bytes() == (shipped.FOLDER / n).read_bytes() for n in names[1:])
    assert shipped.install(tmp_path) == [] and not list(tmp_path.glob(".*.tmp"))
    with pytest.raises(ValueError, match="folder: got int"):
        shipped.install(3)


def test_a_cache_that_cannot_be_made_is_reported_not_raised(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("TUTORLIB_CACHE", str(blocker / "cache"))      # under a file: mkdir fails
    assert shipped.install() == []
    assert "no cache folder for the shipped models" in capsys.readouterr().err


def test_the_switch_is_read_and_checked(monkeypatch):
    monkeypatch.setenv("TUTORLIB_SHIPPED", "0")
    assert not shipped.enabled()
    monkeypatch.setenv("TUTORLIB_SHIPPED", "1")
    assert shipped.enabled()
    monkeypatch.setenv("TUTORLIB_SHIPPED", "maybe")
    with pytest.raises(ValueError, match="TUTORLIB_SHIPPED: got 'maybe'"):
        shipped.enabled()
