"""tutorlib.training.costs: the time of a step and the cost table of lesson 05."""
import pytest

from tutorlib.training import costs


def test_step_time_warms_up_then_keeps_the_fastest():
    calls = []
    assert costs.step_time(lambda: calls.append(1), repeat=3) >= 0 and len(calls) == 4
    with pytest.raises(ValueError, match="fn: got int"):
        costs.step_time(3)
    with pytest.raises(ValueError, match="repeat"):
        costs.step_time(lambda: None, repeat=0)


def test_cost_table_counts_steps_times_and_shares():
    h1 = {"loss": [3.0] * 10, "time": [0.5 * (i + 1) for i in range(10)]}
    h2 = {"loss": [2.0] * 4, "time": [1.0, 2.0, 3.0, 4.25]}
    table = costs.cost_table({"stage 1": (1000, h1), "stage 2": (250, h2), "other": (2000, None)},
                                   end_to_end=100000, reference="stage 1")
    assert list(table.index) == ["stage 1", "stage 2", "other", "end to end (all towers)"]
    assert table.loc["stage 2", "steps"] == 4 and table.loc["stage 1", "steps"] == 10
    assert table.loc["stage 2", "wall time (s)"] == pytest.approx(4.2, abs=0.051)
    assert table.loc["stage 2", "share of stage 1"] == 0.25 and table.loc["other", "share of stage 1"] == 2.0
    assert table.loc["end to end (all towers)", "share of end to end"] == 1.0
    assert table.loc["stage 1", "share of end to end"] == 0.01
    assert table["trainable params"].tolist() == [1000, 250, 2000, 100000]
    with pytest.raises(ValueError, match="reference: got 'stage 3'"):
        costs.cost_table({"stage 1": (1000, h1)}, 10, "stage 3")
    with pytest.raises(ValueError, match=r"stages\['stage 1'\]\[1\]: got list"):
        costs.cost_table({"stage 1": (1000, [1.0])}, 10, "stage 1")
    with pytest.raises(ValueError, match=r"stages\['stage 1'\]: got"):
        costs.cost_table({"stage 1": 1000}, 10, "stage 1")
    with pytest.raises(ValueError, match="end_to_end"):
        costs.cost_table({"stage 1": (1000, h1)}, 0, "stage 1")
    with pytest.raises(ValueError, match="stages: got list"):
        costs.cost_table([], 10, "stage 1")


def test_saved_for_backward_counts_each_kept_storage_once():
    import torch
    x = torch.randn(16, 8, requires_grad=True)
    w = torch.randn(16, 8, requires_grad=True)
    assert costs.saved_for_backward(lambda: (x * w).sum()) == 2 * 16 * 8 * 4      # mul keeps both inputs
    assert costs.saved_for_backward(lambda: (x * x).sum()) == 16 * 8 * 4          # one storage, counted once
    with torch.no_grad():
        assert costs.saved_for_backward(lambda: (x * w).sum()) == 0
    with pytest.raises(ValueError, match="fn: got int"):
        costs.saved_for_backward(3)
