"""tutorlib.core.cache: atomic safetensors entries, damaged-file recovery, locking."""
import multiprocessing as mp
import os
import time
from pathlib import Path

import pytest
import torch

from tutorlib.core import cache


def test_cache_dir_honours_env(tmp_cache):
    d = cache.cache_dir()
    assert d == tmp_cache
    assert d.is_dir()


def test_key_is_stable_and_sensitive():
    assert cache.key({"a": 1, "b": 2}) == cache.key({"b": 2, "a": 1})
    assert cache.key({"a": 1}) != cache.key({"a": 2})
    assert len(cache.key("x")) == 16


def test_roundtrip(tmp_cache):
    tensors = {"x": torch.randn(3, 4), "ids": torch.arange(5), "m": torch.tensor([True, False])}
    path = cache.save_tensors("entry.safetensors", tensors, metadata={"n": 3})
    assert path.exists() and path.parent == tmp_cache
    back = cache.load_tensors("entry.safetensors")
    assert set(back) == set(tensors)
    for k in tensors:
        assert back[k].dtype == tensors[k].dtype
        assert torch.equal(back[k], tensors[k])


def test_roundtrip_of_views_and_noncontiguous(tmp_cache):
    big = torch.arange(20.).view(4, 5)
    cache.save_tensors("views", {"row": big[1], "col": big[:, 2], "t": big.T})
    back = cache.load_tensors("views")
    assert torch.equal(back["row"], big[1])
    assert torch.equal(back["col"], big[:, 2])
    assert torch.equal(back["t"], big.T)


def test_save_tensors_with_shared_memory(tmp_cache):
    w = torch.randn(4, 3)
    cache.save_tensors("tied", {"embed.weight": w, "head.weight": w})
    back = cache.load_tensors("tied")
    assert torch.equal(back["embed.weight"], w) and torch.equal(back["head.weight"], w)


def test_missing_entry_is_none(tmp_cache):
    assert cache.load_tensors("nothing-here") is None


def _damage(path: Path, how: str):
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "header-only":
        path.write_bytes(data[:6])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(b"this is not a safetensors file" * 10)
    elif how == "huge-header":
        path.write_bytes(b"\xff" * 8 + data[8:])


@pytest.mark.parametrize("how", ["truncated", "header-only", "empty", "garbage", "huge-header"])
def test_damaged_file_is_removed(tmp_cache, how):
    path = cache.save_tensors("dmg", {"x": torch.arange(1000.)})
    _damage(path, how)
    assert cache.load_tensors("dmg") is None
    assert not path.exists()


def test_damaged_entry_is_rebuilt(tmp_cache):
    path = cache.save_tensors("dmg2", {"x": torch.zeros(100)})
    _damage(path, "truncated")
    got = cache.cached_tensors("dmg2", lambda: {"x": torch.ones(100)})
    assert torch.equal(got["x"], torch.ones(100))
    assert torch.equal(cache.load_tensors("dmg2")["x"], torch.ones(100))


def test_cached_tensors_builds_once(tmp_cache):
    calls = []

    def build():
        calls.append(1)
        return {"v": torch.arange(6).view(2, 3)}

    a = cache.cached_tensors("once", build)
    b = cache.cached_tensors("once", build)
    c = cache.cached_tensors("once", build)
    assert len(calls) == 1
    assert torch.equal(a["v"], b["v"]) and torch.equal(b["v"], c["v"])


def test_atomic_write_leaves_no_tmp(tmp_cache):
    for i in range(3):
        cache.save_tensors(f"t{i}", {"x": torch.randn(10)})
    cache.cached_tensors("t-c", lambda: {"x": torch.randn(10)})
    cache.cached_folder("t-f", lambda p: (p / "a.txt").write_text("x"))
    names = os.listdir(tmp_cache)
    assert not [n for n in names if n.endswith(".tmp")], names
    assert {"t0", "t1", "t2", "t-c", "t-f"} <= set(names)


def test_failed_save_leaves_no_tmp_and_no_entry(tmp_cache, monkeypatch):
    with pytest.raises(ValueError, match="tensors"):
        cache.save_tensors("bad", {"x": object()})   # not a tensor

    def half_written(tensors, path, metadata=None):  # the disk fills up mid-write
        with open(path, "wb") as f:
            f.write(b"partial")
        raise OSError("No space left on device")
    monkeypatch.setattr(cache, "save_file", half_written)
    with pytest.raises(OSError):
        cache.save_tensors("bad", {"a": torch.zeros(3)})
    names = os.listdir(tmp_cache)
    assert "bad" not in names
    assert not [n for n in names if n.endswith(".tmp")]


@pytest.mark.parametrize("name", ["a/b", "", "../x", "/abs", ".hidden", "sp ace", 3, None])
def test_bad_names(tmp_cache, name):
    with pytest.raises(ValueError, match="name"):
        cache.save_tensors(name, {"x": torch.zeros(1)})
    with pytest.raises(ValueError, match="name"):
        cache.load_tensors(name)


@pytest.mark.parametrize("tensors", [{}, {"x": [1, 2]}, {1: torch.zeros(1)}, [torch.zeros(1)]])
def test_bad_tensors(tmp_cache, tensors):
    with pytest.raises(ValueError, match="tensors"):
        cache.save_tensors("ok", tensors)


def test_cached_folder_builds_once(tmp_cache):
    calls = []

    def build(folder):
        calls.append(folder)
        (folder / "data.txt").write_text("hello")

    p1 = cache.cached_folder("fold", build)
    p2 = cache.cached_folder("fold", build)
    assert p1 == p2 == tmp_cache / "fold"
    assert len(calls) == 1
    assert (p1 / "data.txt").read_text() == "hello"
    assert (p1 / ".complete").exists()
    assert calls[0] != p1                  # built in a temporary folder, then moved


def test_cached_folder_rebuilds_without_marker(tmp_cache):
    stale = tmp_cache / "fold2"
    stale.mkdir(parents=True)
    (stale / "half-written.txt").write_text("junk")
    calls = []

    def build(folder):
        calls.append(1)
        (folder / "data.txt").write_text("fresh")

    p = cache.cached_folder("fold2", build)
    assert calls == [1]
    assert (p / "data.txt").read_text() == "fresh"
    assert not (p / "half-written.txt").exists()
    assert (p / ".complete").exists()


def test_cached_folder_failed_build_leaves_nothing(tmp_cache):
    def build(folder):
        (folder / "x").write_text("partial")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        cache.cached_folder("fold3", build)
    names = os.listdir(tmp_cache)
    assert "fold3" not in names
    assert not [n for n in names if n.endswith(".tmp")]
    # and a later, working build succeeds
    p = cache.cached_folder("fold3", lambda f: (f / "ok").write_text("1"))
    assert (p / "ok").read_text() == "1"


# ----------------------------------------------------------------------- two processes
def _mp_worker(name, log, out, barrier):
    def build():
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(0.5)                    # widen the race window
        g = torch.Generator().manual_seed(1234)
        return {"a": torch.randn(200, 50, generator=g), "b": torch.arange(1000)}

    barrier.wait(timeout=60)
    got = cache.cached_tensors(name, build)
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in got.items()}, out)


def test_two_processes_same_entry(tmp_cache, tmp_path):
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    barrier = ctx.Barrier(2)
    log = tmp_path / "builds.log"
    outs = [str(tmp_path / f"out{i}.safetensors") for i in range(2)]
    procs = [ctx.Process(target=_mp_worker, args=("shared-entry", str(log), o, barrier))
             for o in outs]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    for p in procs:
        if p.is_alive():
            p.kill()
        assert p.exitcode == 0
    from safetensors.torch import load_file
    r0, r1 = load_file(outs[0]), load_file(outs[1])
    final = cache.load_tensors("shared-entry")
    assert final is not None
    g = torch.Generator().manual_seed(1234)
    want = torch.randn(200, 50, generator=g)
    for r in (r0, r1, final):
        assert torch.equal(r["a"], want)
        assert torch.equal(r["b"], torch.arange(1000))
    # the per-entry lock makes the second process wait and reuse the first one's file
    assert len(log.read_text().split()) == 1
    assert not [n for n in os.listdir(tmp_cache) if n.endswith(".tmp")]


def test_cached_module_builds_once_then_loads_and_rebuilds_stale_weights(tmp_cache):
    builds = []

    def build(width=3):
        builds.append(width)
        torch.manual_seed(len(builds))
        return torch.nn.Linear(width, 2), {"accuracy": torch.tensor(0.5 + len(builds))}
    first, extras = cache.cached_module("m.safetensors", lambda: torch.nn.Linear(3, 2), build)
    again, extras2 = cache.cached_module("m.safetensors", lambda: torch.nn.Linear(3, 2), build)
    assert builds == [3] and torch.equal(first.weight, again.weight) and extras2["accuracy"] == extras["accuracy"]
    # weights that do not fit the module asked for are stale: rebuilt, not trusted
    wider, _ = cache.cached_module("m.safetensors", lambda: torch.nn.Linear(5, 2), lambda: build(5))
    assert builds == [3, 5] and wider.weight.shape == (2, 5)
    cache.cached_module("m.safetensors", lambda: torch.nn.Linear(5, 2), lambda: build(5), retrain=True)
    assert builds == [3, 5, 5]
    with pytest.raises(ValueError, match="^retrain:"):
        cache.cached_module("m.safetensors", lambda: torch.nn.Linear(5, 2), build, retrain="yes")
