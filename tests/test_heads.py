"""tutorlib.models.heads: the course's one MLP head."""
import pytest
import torch
from torch import nn

from tutorlib.models.heads import mlp


def test_mlp_is_the_three_layers_written_out():
    torch.manual_seed(0)
    head = mlp(5, 7, 3, nn.ReLU)
    torch.manual_seed(0)
    written = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))
    assert list(head.state_dict()) == list(written.state_dict())     # same names: caches still load
    assert all(torch.equal(a, b) for a, b in zip(head.state_dict().values(), written.state_dict().values()))
    x = torch.randn(4, 5)
    assert torch.equal(head(x), written(x)) and isinstance(mlp(5, 7, 3)[1], nn.GELU)


def test_mlp_names_bad_input():
    with pytest.raises(ValueError, match="^hidden: got 0"):
        mlp(5, 0, 3)
    with pytest.raises(ValueError, match="^activation"):
        mlp(5, 7, 3, activation=torch.relu)
