"""Several small runs trained as one: R copies of the same small MLP, their weights stacked
along a leading "run" dimension, so that one ``torch.baddbmm`` does the work of R matrix
products and one optimizer step updates every run.

    heads = [mlp(384, 256, 128) for seed in seeds]    # each built after its own seed
    stack = Stacked(heads)                            # weights [R, 384, 256], ...
    z = stack(x)                                      # x [R, B, 384] -> z [R, B, 128]
    loss = sum(loss_of_run(z_r) for z_r in z)         # summed, not averaged: each run's own gradient
    ...                                               # train.fit(..., stack.param_groups(wd))
    heads = stack.unstack()                           # R ordinary modules again

Why it gives the same runs: each run's loss depends only on its own slice of the stacked
weights, so the gradient of the summed loss on that slice is the run's own gradient, and
AdamW updates every number on its own. At lesson 08's sizes, on the CPU at one thread, each
slice of ``torch.baddbmm`` is computed with the same kernel as ``nn.Linear`` and the weights come
out equal to the last bit; at some smaller shapes the two kernels round apart by about 1e-7
(both tested). Between the linear maps only element-wise activations are allowed: a layer with
randomness (dropout) or statistics over the batch would not be each run's own. Why it is faster: a 64-wide batch through a 256-wide MLP is too small to keep a
core busy, and each operation's fixed cost (Python, dispatch, autograd) is paid once for R
runs instead of R times.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..core import _validate


ACTIVATIONS = (nn.GELU, nn.ReLU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Identity)


def _layers(module: nn.Module) -> list[nn.Module]:
    """The layers of a ``Linear`` or of a ``Sequential`` of ``Linear`` layers and element-wise
    activations (the course's ``mlp``), also inside a wrapper with one child (a ``Projector``)."""
    while not isinstance(module, (nn.Linear, nn.Sequential)) and len(list(module.children())) == 1:
        module = next(module.children())
    layers = [module] if isinstance(module, nn.Linear) else list(module) if isinstance(module, nn.Sequential) else []
    bad = [type(m).__name__ for m in layers if not isinstance(m, (nn.Linear, *ACTIVATIONS))]
    if not layers or bad:
        raise ValueError(f"modules: got a {type(module).__name__}{f' with {bad}' if bad else ''}, expected "
                         "Linear layers and element-wise activations (an nn.Sequential such as models.heads.mlp)")
    return layers


class Stacked(nn.Module):
    """``modules``: R modules of one architecture (``Linear``, or ``Linear`` layers and
    element-wise activations in an ``nn.Sequential``), R >= 1. Holds each ``Linear``'s weight as ``[R, in, out]``
    and bias as ``[R, 1, out]``; ``forward(x [R, B, in])`` -> ``[R, B, out]``."""

    def __init__(self, modules):
        super().__init__()
        modules = list(modules)
        if not modules:
            raise ValueError("modules: got none, expected R >= 1 modules of one architecture")
        self.templates = [copy.deepcopy(m) for m in modules]    # plain list: not parameters
        per_run = [_layers(m) for m in modules]
        kinds = [[type(a).__name__ for a in p] for p in per_run]
        if any(k != kinds[0] for k in kinds):
            raise ValueError(f"modules: got layers {[k for k in kinds if k != kinds[0]][0]} beside {kinds[0]}, "
                             "expected every module to have the same layers")
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        for j, layer in enumerate(per_run[0]):
            if isinstance(layer, nn.Linear):
                ws = [p[j].weight.detach() for p in per_run]
                shapes = sorted({tuple(w.shape) for w in ws})
                if len(shapes) > 1 or any(p[j].bias is None for p in per_run):
                    raise ValueError(f"modules: got layer {j} with weight shapes {shapes} and biases "
                                     f"{[p[j].bias is not None for p in per_run]}, expected one shape, every bias")
                self.weights.append(nn.Parameter(torch.stack([w.T for w in ws]).contiguous()))
                self.biases.append(nn.Parameter(torch.stack([p[j].bias.detach()[None] for p in per_run])))
        self.activations = nn.ModuleList(copy.deepcopy(m) for m in per_run[0] if not isinstance(m, nn.Linear))
        self.order = [isinstance(m, nn.Linear) for m in per_run[0]]      # True: the next stacked linear map

    @property
    def runs(self) -> int:
        return len(self.templates)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _validate.tensor("x", x, 3, finite=False)          # no device sync inside a training step
        w0 = self.weights[0]
        if x.shape[0] != self.runs or x.shape[-1] != w0.shape[1] or x.dtype != w0.dtype:
            raise ValueError(f"x: got shape {tuple(x.shape)} of {x.dtype}, expected [{self.runs}, B, "
                             f"{w0.shape[1]}] (runs, batch, features) of {w0.dtype}")
        linear, activation = iter(zip(self.weights, self.biases)), iter(self.activations)
        for is_linear in self.order:
            if is_linear:
                w, b = next(linear)
                x = torch.baddbmm(b, x, w)
            else:
                x = next(activation)(x)
        return x

    def param_groups(self, weight_decay: float) -> list[dict]:
        """Two AdamW groups by ``train.decay_groups``'s rule: the weights decay by
        ``weight_decay``, the biases not."""
        _validate.non_negative_number("weight_decay", weight_decay)
        return [{"params": list(self.weights), "weight_decay": weight_decay},
                {"params": list(self.biases), "weight_decay": 0.0}]

    @torch.no_grad()
    def unstack(self) -> list[nn.Module]:
        """R ordinary modules (copies of the ones given, on the stack's device) holding each
        run's current weights."""
        out = []
        for r, module in enumerate(self.templates):
            module = copy.deepcopy(module).to(self.weights[0].device)
            for j, layer in enumerate(m for m in _layers(module) if isinstance(m, nn.Linear)):
                layer.weight.copy_(self.weights[j][r].T)
                layer.bias.copy_(self.biases[j][r, 0])
            out.append(module)
        return out
