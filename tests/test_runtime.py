"""tutorlib.core.runtime: profile, seeding, device."""
import numpy as np
import pytest
import torch

import tutorlib
from tutorlib.core import profiles, runtime, threads


@pytest.mark.parametrize("value, want", [("quick", "quick"), ("full", "full"),
                                         ("  FULL ", "full"), ("Quick", "quick")])
def test_profile_honours_env(monkeypatch, value, want):
    monkeypatch.setenv("TUTORLIB_PROFILE", value)
    assert tutorlib.profile() == want


def test_profile_default_follows_device(monkeypatch):
    monkeypatch.delenv("TUTORLIB_PROFILE", raising=False)
    want = runtime._auto_profile(tutorlib.device())[0]
    assert tutorlib.profile() == want


@pytest.mark.parametrize("value", ["fast", "medium", "1"])
def test_profile_rejects_bad_values(monkeypatch, value):
    monkeypatch.setenv("TUTORLIB_PROFILE", value)
    with pytest.raises(ValueError, match="TUTORLIB_PROFILE"):
        tutorlib.profile()


def test_pick_follows_profile(monkeypatch):
    monkeypatch.setenv("TUTORLIB_PROFILE", "quick")
    assert tutorlib.pick(1, 2) == 1
    monkeypatch.setenv("TUTORLIB_PROFILE", "full")
    assert tutorlib.pick(quick=1, full=2) == 2


def test_seed_everything_returns_seed():
    assert tutorlib.seed_everything(123) == 123
    assert tutorlib.seed_everything(np.int64(7)) == 7


def test_seed_everything_reads_env(monkeypatch):
    monkeypatch.setenv("TUTORLIB_SEED", "42")
    assert tutorlib.seed_everything() == 42
    assert tutorlib.get_seed() == 42
    monkeypatch.delenv("TUTORLIB_SEED")
    assert tutorlib.seed_everything() == 0


def test_bad_env_seed(monkeypatch):
    monkeypatch.setenv("TUTORLIB_SEED", "abc")
    with pytest.raises(ValueError, match="TUTORLIB_SEED"):
        tutorlib.seed_everything()


def test_same_seed_same_random_numbers():
    tutorlib.seed_everything(5)
    a = torch.rand(10)
    na = np.random.rand(3)
    tutorlib.seed_everything(5)
    b = torch.rand(10)
    nb = np.random.rand(3)
    assert torch.equal(a, b)
    assert np.array_equal(na, nb)
    tutorlib.seed_everything(6)
    assert not torch.equal(torch.rand(10), a)


@pytest.mark.parametrize("seed", [-1, "3", "abc", 1.5, True, [1]])
def test_bad_seeds(seed):
    with pytest.raises(ValueError, match="seed"):
        tutorlib.seed_everything(seed)


def test_device_is_torch_device():
    d = tutorlib.device()
    assert isinstance(d, torch.device)
    assert d.type in ("cpu", "cuda", "mps")
    torch.zeros(1, device=d)          # usable


def test_mps_is_opt_in_and_says_so_once(monkeypatch, capsys):
    """Apple's MPS is never picked by default (the course is untested there): the CPU, with
    one message that says how to opt in; TUTORLIB_DEVICE=mps opts in."""
    monkeypatch.delenv("TUTORLIB_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(runtime, "_mps_available", lambda: True)
    monkeypatch.setattr(runtime, "_TOLD", set())
    assert runtime.device() == torch.device("cpu") and runtime.device() == torch.device("cpu")
    err = capsys.readouterr().err
    assert err.count("TUTORLIB_DEVICE=mps") == 1 and "MPS" in err
    monkeypatch.setenv("TUTORLIB_DEVICE", "mps")
    assert runtime.device() == torch.device("mps")


def test_tutorlib_device_is_checked(monkeypatch):
    monkeypatch.setenv("TUTORLIB_DEVICE", "tpu")
    with pytest.raises(ValueError, match="^TUTORLIB_DEVICE: got 'tpu'"):
        runtime.device()
    monkeypatch.setenv("TUTORLIB_DEVICE", "cpu")
    assert runtime.device() == torch.device("cpu")
    monkeypatch.setattr(runtime, "_mps_available", lambda: False)
    monkeypatch.setenv("TUTORLIB_DEVICE", "mps")
    with pytest.raises(RuntimeError, match="no MPS device"):
        runtime.device()


def test_lazy_floors():
    assert tutorlib.objectives.__name__ == "tutorlib.objectives"
    from tutorlib.objectives import losses
    assert losses.__name__ == "tutorlib.objectives.losses"
    with pytest.raises(AttributeError):
        tutorlib.not_a_module
    assert runtime.PROFILES is profiles.PROFILES and tuple(runtime.PROFILES) == ("quick", "full")


class _FakeGPU:
    def __init__(self, gib, name="Tesla T4"):
        self.total_memory, self.name = int(gib * 2**30), name


@pytest.mark.parametrize("gpu, host, want", [(15, 12, "quick"), (15, 64, "quick"), (40, 12, "quick"),
                                             (40, 64, "full"), (80, 200, "full")])
def test_profile_on_a_gpu_follows_its_memory_and_says_so(monkeypatch, capsys, gpu, host, want):
    monkeypatch.delenv("TUTORLIB_PROFILE", raising=False)
    monkeypatch.setattr(runtime, "device", lambda: torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: _FakeGPU(gpu))
    monkeypatch.setattr(runtime, "_host_gib", lambda: float(host))
    monkeypatch.setattr(runtime, "_TOLD", set())
    assert tutorlib.profile() == want
    told = capsys.readouterr().err
    assert f"profile {want!r}" in told and "TUTORLIB_PROFILE=" in told and f"{gpu} GiB" in told
    tutorlib.profile()
    assert capsys.readouterr().err == "", "the choice is told once, not at every call"


def test_profile_on_a_cpu_says_nothing(monkeypatch, capsys):
    monkeypatch.delenv("TUTORLIB_PROFILE", raising=False)
    monkeypatch.setattr(runtime, "device", lambda: torch.device("cpu"))
    assert tutorlib.profile() == "quick"
    assert capsys.readouterr().err == ""


def _cgroup(tmp_path, files: dict):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return str(tmp_path)


@pytest.mark.parametrize("files, want", [
    ({"cpu.max": "100000 100000\n"}, 1.0),                       # Binder: one CPU (cgroup v2)
    ({"cpu.max": "150000 100000\n"}, 1.5),
    ({"cpu.max": "max 100000\n"}, None),                          # v2, no quota
    ({"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2.0),   # v1
    ({"cpu,cpuacct/cpu.cfs_quota_us": "50000", "cpu,cpuacct/cpu.cfs_period_us": "100000"}, 0.5),
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),       # v1, no quota
    ({}, None),                                                   # no cgroup files at all
])
def test_cpu_quota_reads_cgroup_v2_and_v1(tmp_path, files, want):
    assert threads.cpu_quota(_cgroup(tmp_path, files)) == want


def test_cap_threads_follows_a_fake_quota_unless_the_user_set_threads(tmp_path, monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
        torch.set_num_threads(4)                                  # as if the host had 4 cores
        monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(4)), raising=False)
        assert threads.cap_threads(_cgroup(tmp_path / "none", {"cpu.max": "max 100000"})) == 4
        assert threads.cap_threads(_cgroup(tmp_path / "q15", {"cpu.max": "150000 100000"})) == 1
        torch.set_num_threads(4)
        assert threads.cap_threads(_cgroup(tmp_path / "q3", {"cpu.max": "300000 100000"})) == 3
        torch.set_num_threads(4)                                  # a quota below one CPU: still one thread
        assert threads.cap_threads(_cgroup(tmp_path / "q05", {"cpu.max": "50000 100000"})) == 1
        torch.set_num_threads(4)
        monkeypatch.setenv("OMP_NUM_THREADS", "4")                # the user's choice wins
        assert threads.cap_threads(_cgroup(tmp_path / "q1", {"cpu.max": "100000 100000"})) == 4
    finally:
        torch.set_num_threads(before)


def test_cap_threads_checks_root():
    with pytest.raises(ValueError, match="root: got int"):
        threads.cap_threads(3)
    with pytest.raises(ValueError, match="root: got NoneType"):
        threads.cpu_quota(None)
