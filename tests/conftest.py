import os

import pytest

os.environ.setdefault("TUTORLIB_PROFILE", "quick")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    """A fresh, empty TUTORLIB_CACHE for one test."""
    monkeypatch.setenv("TUTORLIB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def tok():
    """The course tokenizer (training vocabulary), shared by the tests that need one."""
    from tutorlib import world
    return world.Tokenizer()
