"""tutorlib.course.check: the exercise checkers."""
import pytest
import torch

from tutorlib.course import check


def reference(x, y):
    return (x * y).sum(-1)


def make_inputs():
    return torch.randn(4, 3), torch.randn(4, 3)


def test_exercise_error_is_assertion_error():
    assert issubclass(check.ExerciseError, AssertionError)


def test_identical_functions_pass(capsys):
    def my_dot(x, y):
        return torch.einsum("nd,nd->n", x, y)

    worst = check.function(my_dot, reference, make_inputs)
    out = capsys.readouterr().out
    assert "✅" in out and "my_dot" in out and "3 random inputs" in out
    assert 0.0 <= worst < 1e-5


def test_name_and_trials(capsys):
    check.function(reference, reference, make_inputs, trials=5, name="dot product")
    out = capsys.readouterr().out
    assert out.startswith("✅ dot product") and "5 random inputs" in out


def test_single_input_not_tuple():
    assert check.function(torch.relu, lambda x: x.clamp_min(0), lambda: torch.randn(5)) == 0.0


def test_wrong_shape():
    with pytest.raises(check.ExerciseError, match="shape") as e:
        check.function(lambda x, y: x * y, reference, make_inputs)
    assert "forget to sum" in str(e.value)
    with pytest.raises(AssertionError, match="shape"):
        check.function(lambda x, y: (x * y).sum(), reference, make_inputs)


def test_not_written_yet():
    def exercise(x, y):
        raise NotImplementedError("fill in the blank")

    with pytest.raises(check.ExerciseError, match="not written yet") as e:
        check.function(exercise, reference, make_inputs)
    assert "exercise" in str(e.value) and "fill in the blank" in str(e.value)


def test_wrong_values():
    with pytest.raises(check.ExerciseError, match="differ") as e:
        check.function(lambda x, y: (x * y).sum(-1) + 0.01, reference, make_inputs)
    assert "trial 1" in str(e.value)


def test_learner_crash_is_reported():
    def buggy(x, y):
        return x @ y                      # [4, 3] @ [4, 3]: shapes do not fit

    with pytest.raises(check.ExerciseError, match="buggy raised RuntimeError"):
        check.function(buggy, reference, make_inputs)


def test_nan_result():
    with pytest.raises(check.ExerciseError, match="NaN"):
        check.function(lambda x, y: reference(x, y) * float("nan"), reference, make_inputs)


def test_tolerances():
    close_enough = lambda x, y: reference(x, y) + 1e-7      # noqa: E731
    check.function(close_enough, reference, make_inputs)
    with pytest.raises(check.ExerciseError, match="differ"):
        check.function(close_enough, reference, make_inputs, atol=1e-9, rtol=1e-9)


def test_rng_state_is_restored_and_inputs_seeded():
    torch.manual_seed(123)
    want = torch.rand(3)
    torch.manual_seed(123)
    check.function(reference, reference, make_inputs)
    assert torch.equal(torch.rand(3), want)
    seen = []

    def record(x, y):
        seen.append(x.clone())
        return reference(x, y)

    check.function(record, reference, make_inputs, trials=1, seed=7)
    check.function(record, reference, make_inputs, trials=1, seed=7)
    assert torch.equal(seen[0], seen[1])


def test_bad_arguments():
    with pytest.raises(ValueError, match="learner"):
        check.function(None, reference, make_inputs)
    with pytest.raises(ValueError, match=r"^reference:"):
        check.function(reference, 3, make_inputs)
    with pytest.raises(ValueError, match=r"^make_inputs:"):
        check.function(reference, reference, [1, 2])


def test_close_tuples_and_numbers(capsys):
    a, b = torch.randn(3), torch.randn(2, 2)
    assert check.close((a, b), (a.clone(), b.clone())) == 0.0
    assert "✅" in capsys.readouterr().out
    assert check.close([a, 2.0], (a, 2.0)) == 0.0
    assert check.close(1.5, 1.5) == 0.0
    assert check.close(torch.tensor(1.5), 1.5) == 0.0
    with pytest.raises(check.ExerciseError, match="output 1: .*differ"):
        check.close((a, b), (a, b + 1))
    with pytest.raises(check.ExerciseError, match="2 outputs"):
        check.close((a,), (a, b))
    with pytest.raises(check.ExerciseError, match="2 outputs"):
        check.close(a, (a, b))
    with pytest.raises(check.ExerciseError, match="shape"):
        check.close((a, b), (a, b.flatten()))
    with pytest.raises(check.ExerciseError, match=r"^your result: expected a tensor .*got str"):
        check.close("1.5", 1.5)
    with pytest.raises(check.ExerciseError, match="differ"):
        check.close(1.0, 1.5)


def test_checks_return_the_difference_without_echoing_it_in_a_notebook():
    d = check.close(torch.tensor([1.0, 2.0], dtype=torch.float64), torch.tensor([1.0, 2.0 + 1e-7], dtype=torch.float64))
    assert isinstance(d, float) and d == pytest.approx(1e-7, abs=1e-8)
    assert hasattr(d, "_ipython_display_") and d._ipython_display_() is None


def test_function_with_one_trial_says_test_input(capsys):
    check.function(lambda x: x + 1, lambda x: x + 1, lambda: torch.ones(2), trials=1, name="plus one")
    assert "on its test input" in capsys.readouterr().out


# ---- gradients, named trials and hints (issue 16) ----
import math                                           # noqa: E402

import torch.nn.functional as F                       # noqa: E402

from tutorlib.objectives import binding, losses  # noqa: E402


def clip_inputs():
    return torch.randn(8, 16), torch.randn(8, 16), torch.tensor(math.log(1 / 0.07))


def test_gradients_compared_and_reported(capsys):
    def mine(x, y, t):
        return losses.clip_loss(x, y, t)
    check.function(mine, losses.clip_loss, clip_inputs)
    assert "values and gradients" in capsys.readouterr().out


@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")
def test_math_exp_cuts_the_gradient_to_the_temperature():
    def mine(x, y, t):                 # right value, no gradient to t
        logits = math.exp(t) * F.normalize(x, dim=-1) @ F.normalize(y, dim=-1).T
        labels = torch.arange(len(x))
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    with pytest.raises(check.ExerciseError, match=r"no gradient flows to `t`"):
        check.function(mine, losses.clip_loss, clip_inputs)
    check.function(mine, losses.clip_loss, clip_inputs, gradients=False)   # the values alone agree


def test_wrong_gradient_is_caught():
    class Straight(torch.autograd.Function):      # right forward, gradient doubled
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, g):
            return 2 * g
    with pytest.raises(check.ExerciseError, match="gradient of `x`"):
        check.function(lambda x, y: reference(Straight.apply(x), y), reference, make_inputs)


def test_non_differentiable_reference_skips_gradients(capsys):
    check.function(lambda z: z.sum().item(), lambda z: z.sum().item(), lambda: (torch.randn(4),))
    assert "gradients" not in capsys.readouterr().out


@pytest.mark.parametrize("mistake, cause", [
    (lambda x, y, t: losses.clip_loss(x, y, t.log()), "log of the scale"),
    (lambda x, y, t: losses.info_nce(t.exp() * losses.similarity(x, y)), "one direction only"),
    (lambda x, y, t: 2 * losses.clip_loss(x, y, t), "without halving"),
    (lambda x, y, t: 8 * losses.clip_loss(x, y, t), "sum instead of averaging"),
])
def test_known_mistakes_are_named(mistake, cause):
    with pytest.raises(check.ExerciseError, match=cause):
        check.function(mistake, losses.clip_loss, clip_inputs)


def test_transposed_result_is_named():
    with pytest.raises(check.ExerciseError, match="transposed"):
        check.function(lambda x, y: losses.similarity(x, y).T, losses.similarity,
                       lambda: (torch.randn(8, 4), torch.randn(5, 4)))


def test_named_trials_say_which_failed(capsys):
    cases = {"random rows": lambda: (torch.randn(4, 3), torch.randn(4, 3)),
             "with ties": lambda: (torch.ones(4, 3), torch.ones(4, 3))}
    check.function(reference, reference, cases)
    assert "random rows; with ties" in capsys.readouterr().out

    def wrong_on_ties(x, y):
        return reference(x, y) + (x == y).all(-1).float()
    with pytest.raises(check.ExerciseError, match=r"trial 2 \(with ties\)"):
        check.function(wrong_on_ties, reference, cases)


def test_extra_mistakes_and_bad_cases():
    with pytest.raises(check.ExerciseError, match="Likely cause: squared"):
        check.function(lambda x, y: reference(x, y) ** 2, reference, make_inputs,
                       mistakes=[(lambda x, y: reference(x, y) ** 2, "squared")])
    with pytest.raises(ValueError, match="make_inputs"):
        check.function(reference, reference, {"a": 3})


def test_verdicts_use_the_learners_names():
    def mine(text, image):                        # right values, no gradient to `image`
        return reference(text, image.detach())
    with pytest.raises(check.ExerciseError, match="no gradient flows to `image`"):
        check.function(mine, reference, make_inputs)


def test_var_positional_arguments_are_named_by_index():
    names = check._arg_names(lambda *vectors, eps=0: None, None, 3)
    assert names == ["`vectors[0]`", "`vectors[1]`", "`vectors[2]`"]
    assert check._arg_names(len, None, 2)[1] == "argument 1 (counting from 0)"


@pytest.mark.parametrize("mistake, cause", [
    (lambda t, o, s: binding.gram_loss(t, o, s, label_smoothing=0.0), "smooths its labels"),
    (lambda t, o, s: _gram_plus(t, o, s), "minus sign is missing"),
])
def test_gram_loss_mistakes_are_named(mistake, cause):
    with pytest.raises(check.ExerciseError, match=cause):
        check.function(mistake, binding.gram_loss, _gram_inputs)


def _gram_inputs():
    return torch.randn(8, 6), [torch.randn(8, 6) for _ in range(3)], torch.tensor(math.log(1 / 0.07))


def _gram_plus(t, o, s):
    logits, labels = s.exp() * binding.volume_matrix(t, o), torch.arange(len(t))
    return (F.cross_entropy(logits, labels, label_smoothing=0.1)
            + F.cross_entropy(logits.T, labels, label_smoothing=0.1)) / 2


def _anchor_inputs():
    return (torch.randn(8, 6), {"text": torch.randn(8, 6), "audio": torch.randn(8, 6)},
            {"text": torch.tensor(2.66), "audio": math.log(20)})


@pytest.mark.parametrize("mistake, cause", [
    (lambda x, o, sc: binding.anchor_loss(x, o, {m: torch.as_tensor(v).log() for m, v in sc.items()}),
     "log-scale"),
    (lambda x, o, sc: binding.anchor_loss(x, o, sc) / 2, "summed, not averaged"),
])
def test_anchor_loss_mistakes_are_named(mistake, cause):
    with pytest.raises(check.ExerciseError, match=cause):
        check.function(mistake, binding.anchor_loss, _anchor_inputs)


def test_across_processes_checks_its_mistakes_before_starting_processes():
    from tutorlib.course import mistakes
    same = lambda *a: a                                             # noqa: E731
    with pytest.raises(ValueError, match="mistakes: got"):
        check.across_processes(same, same, same, mistakes=[same])
    listed = mistakes.local_loss_mistakes()
    assert len(listed) == 2 and all(callable(f) and "rank" in m or "gathered" in m for f, m in listed)
    assert "not offset by the rank" in listed[0][1]
