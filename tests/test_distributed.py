"""Lesson 09's launcher and the contrastive losses across processes: two real processes on the
CPU (gloo), each form's loss and every gradient against the single-process loss on the
concatenated batch, and a failing or hanging process reported by rank, not left waiting."""
import math
import os
import sys

import pytest
import torch

from tutorlib.objectives import distributed, losses
from tutorlib.training import ddp, launch

N_LOCAL, D = 5, 8


def _batch(world_size):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(world_size * N_LOCAL, D, generator=g), torch.randn(world_size * N_LOCAL, D, generator=g),
            torch.tensor(math.log(10.0)), torch.tensor(-3.0))


def _forms(rank, world_size):
    """Each form's loss and the gradients of this process's rows of the global batch."""
    img, txt, scale, bias = _batch(world_size)
    rows = slice(rank * N_LOCAL, (rank + 1) * N_LOCAL)
    out = {}
    for name, fn in (("gathered", lambda i, t: distributed.gathered_clip_loss(i, t, scale)),
                     ("local", lambda i, t: distributed.gathered_clip_loss(i, t, scale, local_loss=True)),
                     ("ring", lambda i, t: distributed.siglip_ring_loss(i, t, scale, bias))):
        i, t = img[rows].clone().requires_grad_(), txt[rows].clone().requires_grad_()
        with distributed.traffic() as received, distributed.traffic() as outer:
            loss = fn(i, t)
        loss.backward()
        assert received == outer
        out[name] = (loss.detach(), i.grad, t.grad, received["bytes"])
    return out


def _single(name, world_size):
    img, txt, scale, bias = _batch(world_size)
    img.requires_grad_(), txt.requires_grad_()
    loss = losses.siglip_loss(img, txt, scale, bias) if name == "ring" else losses.clip_loss(img, txt, scale)
    loss.backward()
    return loss.detach(), img.grad, txt.grad


def test_every_form_equals_the_single_process_loss_and_gradients():
    world = 2
    per_rank = launch.run(_forms, world, timeout=240)
    for name in ("gathered", "local", "ring"):
        loss, g_img, g_txt = _single(name, world)
        mean_loss = sum(r[name][0] for r in per_rank) / world
        torch.testing.assert_close(mean_loss, loss, atol=1e-6, rtol=1e-6)
        # each process's rows get W x the global gradient; DDP's average over processes divides it out
        torch.testing.assert_close(torch.cat([r[name][1] for r in per_rank]) / world, g_img, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(torch.cat([r[name][2] for r in per_rank]) / world, g_txt, atol=1e-6, rtol=1e-5)
    # bytes received in the forward pass: the gathers bring the other ranks' images and texts,
    # the ring passes the texts W - 1 times
    block = N_LOCAL * D * 4
    assert [r["gathered"][3] for r in per_rank] == [2 * (world - 1) * block] * world
    assert [r["local"][3] for r in per_rank] == [2 * (world - 1) * block] * world
    assert [r["ring"][3] for r in per_rank] == [(world - 1) * block] * world


def test_traffic_counts_only_inside_its_block():
    with distributed.traffic() as t:
        distributed._received(10)
        with distributed.traffic() as inner:
            distributed._received(5)
    distributed._received(7)
    assert t == {"bytes": 15} and inner == {"bytes": 5}


def _fails_on_rank_one(rank, world_size):
    if rank == 1:
        raise ValueError("rank one fails on purpose")
    torch.distributed.barrier()          # rank 0 would wait here forever without the launcher


def _sleeps(rank, world_size):
    import time
    time.sleep(60)


def _rank_and_env(rank, world_size):
    return rank, os.environ.get("TUTORLIB_LAUNCH_TEST"), os.getppid()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fork server is used on Linux only")
def test_processes_see_the_environment_at_launch_from_one_fork_server_or_spawned(monkeypatch):
    """Forked from one server that outlives each launch, every process still gets the
    environment the caller has when it launches (not the server's, frozen at its start);
    spawned processes too."""
    monkeypatch.setenv("TUTORLIB_LAUNCH_TEST", "first")
    first = launch.run(_rank_and_env, 2, timeout=120)
    monkeypatch.setenv("TUTORLIB_LAUNCH_TEST", "second")
    second = launch.run(_rank_and_env, 2, timeout=120)
    assert [r[:2] for r in first] == [(0, "first"), (1, "first")]
    assert [r[:2] for r in second] == [(0, "second"), (1, "second")]
    servers = {r[2] for r in first + second}
    assert len(servers) == 1 and os.getpid() not in servers      # children of one server, not of pytest
    spawned = launch.run(_rank_and_env, 2, start_method="spawn", timeout=120)
    assert [r[:2] for r in spawned] == [(0, "second"), (1, "second")] and spawned[0][2] == os.getpid()


def test_a_failing_rank_is_named_and_a_hanging_one_times_out():
    with pytest.raises(RuntimeError, match=r"rank 1 of 2 raised:(.|\n)*rank one fails on purpose"):
        launch.run(_fails_on_rank_one, 2, timeout=120)
    with pytest.raises(TimeoutError, match=r"ranks \[0, 1\] of 2 had not finished after 5 s"):
        launch.run(_sleeps, 2, timeout=5)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="fn: got int"):
        launch.run(3, 2)
    with pytest.raises(ValueError, match="world_size"):
        launch.run(_sleeps, 0)
    with pytest.raises(ValueError, match="backend"):
        launch.run(_sleeps, 2, backend="mpi")
    with pytest.raises(ValueError, match="start_method: got 'fork'"):
        launch.run(_sleeps, 2, start_method="fork")
    with pytest.raises(RuntimeError, match="not initialised"):
        distributed.gathered_clip_loss(torch.randn(2, 3), torch.randn(2, 3), 0.0)


class _Towers(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.image, self.text = torch.nn.Linear(6, 4), torch.nn.Linear(7, 4)
        self.logit_scale = torch.nn.Parameter(torch.tensor(math.log(10.0)))

    def forward(self, x, y):
        return self.image(x), self.text(y)


def _data(step, n):
    g = torch.Generator().manual_seed(step)
    return torch.randn(n, 6, generator=g), torch.randn(n, 7, generator=g)


def _train(rank, world_size, gathered, steps=6, n_global=8):
    """``train.fit`` under DistributedDataParallel: each process takes its slice of the global batch."""
    from torch.nn.parallel import DistributedDataParallel
    from tutorlib.training import train
    model = _Towers()
    ddp = DistributedDataParallel(model) if world_size > 1 else model
    rows = slice(rank * n_global // world_size, (rank + 1) * n_global // world_size)

    def loss_fn(step):
        x, y = _data(step, n_global)
        if world_size > 1:            # through the DDP wrapper, so that its hooks average the gradients
            zi, zt = ddp(x[rows], y[rows])
        else:
            zi, zt = model.image(x), model.text(y)
        if gathered and world_size > 1:
            return distributed.gathered_clip_loss(zi, zt, model.logit_scale)
        return losses.clip_loss(zi, zt, model.logit_scale)
    train.fit(loss_fn, model.parameters(), lambda s: s, steps=steps, lr=1e-2, progress=False)
    return {k: v.detach() for k, v in model.state_dict().items()}


def test_ddp_with_the_gathered_loss_trains_like_one_process_on_the_global_batch():
    single = _train(0, 1, gathered=True)
    two = launch.run(_train, 2, True, timeout=240)
    local = launch.run(_train, 2, False, timeout=240)
    for k in single:
        torch.testing.assert_close(two[0][k], single[k], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(two[1][k], two[0][k], atol=0, rtol=0)     # DDP keeps the replicas identical
    gap = max((local[0][k] - single[k]).abs().max().item() for k in single)
    assert gap > 1e-3, f"local negatives trained the same weights as the gathered loss (largest difference {gap:.1e})"


def _shard(rank, world_size):
    img, txt, scale, _ = _batch(world_size)
    rows = slice(rank * N_LOCAL, (rank + 1) * N_LOCAL)
    return img[rows], txt[rows], scale


def _local_without_offset(image_emb, text_emb, logit_scale):
    """The classic mistake: labels arange(N_local) in every process."""
    import torch.nn.functional as F
    img, txt = F.normalize(image_emb, dim=-1), F.normalize(text_emb, dim=-1)
    all_img, all_txt = distributed.gather(img), distributed.gather(txt)
    labels, s = torch.arange(len(img)), logit_scale.exp()
    return (F.cross_entropy(s * img @ all_txt.T, labels) + F.cross_entropy(s * txt @ all_img.T, labels)) / 2


def _local_reference(image_emb, text_emb, logit_scale):
    return distributed.gathered_clip_loss(image_emb, text_emb, logit_scale, local_loss=True)


def _not_written(image_emb, text_emb, logit_scale):
    raise NotImplementedError("Exercise 2: the local loss. Hint: offset the labels.")


def test_check_across_processes_names_the_rank_that_differs():
    from tutorlib.course import check, mistakes
    assert check.across_processes(_local_reference, _local_reference, _shard, world_size=2) == 0
    # the classic mistake: rank 0's loss is right, rank 1's labels point at rank 0's pairs. Every
    # rank's value is compared before any gradient (rank 0's gradients are wrong too, through the
    # gather), so the verdict names rank 1 and its loss value, and the mistake by name
    with pytest.raises(check.ExerciseError,
                       match=r"rank 1 of 2: values differ(.|\n)*Likely cause: the labels are not offset by the rank"):
        check.across_processes(_local_without_offset, _local_reference, _shard, world_size=2,
                               mistakes=mistakes.local_loss_mistakes())
    with pytest.raises(check.ExerciseError, match=r"rank 1 of 2: values differ"):   # without the list: no hint
        check.across_processes(_local_without_offset, _local_reference, _shard, world_size=2)
    with pytest.raises(check.ExerciseError, match="is not written yet: Exercise 2: the local loss"):
        check.across_processes(_not_written, _local_reference, _shard, world_size=2)


FORMS = {"gathered": lambda i, t, s, b: distributed.gathered_clip_loss(i, t, s),
         "local": lambda i, t, s, b: distributed.gathered_clip_loss(i, t, s, local_loss=True),
         "ring": lambda i, t, s, b: distributed.siglip_ring_loss(i, t, s, b)}
ONE_PROCESS = {"clip": lambda i, t, s, b: losses.clip_loss(i, t, s),
               "ring": lambda i, t, s, b: losses.siglip_loss(i, t, s, b)}


def test_form_gradients_and_reference_gradients_are_the_loops_above():
    world = 2
    batch = _batch(world)
    per_rank = launch.run(distributed.form_gradients, world, FORMS, batch, timeout=240)
    by_loop = launch.run(_forms, world, timeout=240)
    for name in FORMS:
        for mine, loop in zip(per_rank, by_loop):
            for a, b in zip(mine[name][:3], loop[name][:3]):                 # loss, image and text gradients
                assert torch.equal(a, b)
            assert mine[name][3].shape == (2,)
        single = ONE_PROCESS["ring" if name == "ring" else "clip"]
        loss, g_img, g_txt, g_sb = distributed.reference_gradients(single, batch)
        for a, b in zip((loss, g_img, g_txt), _single(name, world)):
            assert torch.equal(a, b)
        assert (g_sb[1] == 0) == (name != "ring")                            # CLIP's loss has no bias
        assert abs(sum(r[name][3] for r in per_rank) / world - g_sb).max() < 1e-5    # DDP's average of the shares
    with pytest.raises(ValueError, match="batch: got tuple"):
        distributed.reference_gradients(FORMS["gathered"], batch[:3])
    with pytest.raises(ValueError, match="forms: got list"):
        distributed.form_gradients(0, 1, [FORMS["gathered"]], batch)


def test_distributed_costs_count_each_form_s_bytes_in_each_process():
    from tutorlib.training import costs
    sizes, width = [8, 16], 4
    per_rank = launch.run(distributed.distributed_costs, 2, FORMS, sizes, width, timeout=240)
    for table in per_rank:
        assert list(table) == [(name, n) for n in sizes for name in FORMS]
        for (name, n), row in table.items():
            block = n // 2 * width * 4 / 1024                                 # one process's [N_l, d] floats
            assert row["received (KiB)"] == (block if name == "ring" else 2 * block)
            assert row["largest block (KiB)"] > 0 and row["kept for backward (KiB)"] > 0
    with pytest.raises(ValueError, match="sizes: got"):
        distributed.distributed_costs(0, 2, FORMS, [1], width)


def _pair():
    from tutorlib.methods import fewpairs
    return fewpairs.ProjectorPair(6, 5, seed=0, out_dim=4, hidden=8)


def test_data_parallel_gathered_trains_like_one_process():
    g = torch.Generator().manual_seed(0)
    features = {"image": torch.randn(64, 6, generator=g), "text": torch.randn(64, 5, generator=g)}
    one = ddp.data_parallel(0, 1, _pair, features, "gathered", 5, 16, 0)
    two = launch.run(ddp.data_parallel, 2, _pair, features, "gathered", 5, 16, 0, timeout=240)
    own = launch.run(ddp.data_parallel, 2, _pair, features, "own", 5, 16, 0, timeout=240)
    assert one["loss"].shape == (5,)
    for k, v in one["state"].items():
        torch.testing.assert_close(two[0]["state"][k], v, atol=1e-5, rtol=1e-4)
        assert torch.equal(two[1]["state"][k], two[0]["state"][k])             # DDP keeps the replicas identical
    assert max((own[0]["state"][k] - v).abs().max().item() for k, v in one["state"].items()) > 1e-4
    with pytest.raises(ValueError, match="negatives: got 'local'"):
        ddp.data_parallel(0, 1, _pair, features, "local", 5, 16, 0)
    with pytest.raises(ValueError, match="optimizer: got 'adam'"):
        ddp.data_parallel(0, 1, _pair, features, "own", 5, 16, 0, optimizer="adam")
    with pytest.raises(ValueError, match="make_model, features"):
        ddp.data_parallel(0, 1, _pair, {"image": features["image"]}, "own", 5, 16, 0)
    with pytest.raises(ValueError, match="runs: got"):
        ddp.data_parallel_runs(0, 1, {"a": "gathered"}, _pair, features, 5, 16, 0)


def _gap(a, b):
    return max((a[k] - b[k]).abs().max().item() for k in b)


def test_the_ddp_check_catches_a_gather_without_gradient_under_sgd_not_under_adamw():
    """Lesson 09's Part 5 check (``gap < 1e-4`` for the gathered run, ``> 100 x`` that for a wrong
    one) on the mistake it is there for: a gather without gradient gives every process 1/W of
    the exact gradient. SGD's update scales with it and ends far away; AdamW's barely moves, so
    with AdamW the same check would pass the mistake."""
    g = torch.Generator().manual_seed(0)
    features = {"image": torch.randn(64, 6, generator=g), "text": torch.randn(64, 5, generator=g)}
    runs = {f"{neg} {opt}": {"negatives": neg, "optimizer": opt}
            for opt in ("sgd", "adamw") for neg in ("gathered", "gathered, no gradient")}
    one = ddp.data_parallel_runs(0, 1, {o: {"negatives": "gathered", "optimizer": o} for o in ("sgd", "adamw")},
                                         _pair, features, 20, 16, 0)
    two = launch.run(ddp.data_parallel_runs, 2, runs, _pair, features, 20, 16, 0, timeout=240)[0]
    exact_sgd = max(_gap(two["gathered sgd"]["state"], one["sgd"]["state"]), 1e-7)
    assert exact_sgd < 1e-4
    assert _gap(two["gathered, no gradient sgd"]["state"], one["sgd"]["state"]) > 100 * exact_sgd      # caught
    exact_adamw = max(_gap(two["gathered adamw"]["state"], one["adamw"]["state"]), 1e-7)
    assert exact_adamw < 1e-4
    assert _gap(two["gathered, no gradient adamw"]["state"], one["adamw"]["state"]) < 1e-4              # missed
