"""tutorlib.evaluation.representations: linear CKA and mutual k-NN, against their loops."""
import pytest
import torch
import torch.nn.functional as F

from tutorlib.evaluation import representations


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _loop_cka(x, y):
    """CKA through the Gram matrices: HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)), K = XXᵀ, H centring."""
    n = len(x)
    h = torch.eye(n, dtype=torch.float64) - 1.0 / n
    k, l_ = h @ (x.double() @ x.double().T) @ h, h @ (y.double() @ y.double().T) @ h
    return float((k * l_).sum() / ((k * k).sum() * (l_ * l_).sum()).sqrt())


def test_linear_cka_equals_the_gram_form_and_its_invariances():
    x, y = _randn(40, 6), _randn(40, 9, seed=1)
    assert representations.linear_cka(x, y) == pytest.approx(_loop_cka(x, y), abs=1e-9)
    q, _ = torch.linalg.qr(_randn(6, 6, seed=2))
    assert representations.linear_cka(x, 3.0 * x @ q + 5.0) == pytest.approx(1.0, abs=1e-9)
    assert representations.linear_cka(x, y) < 0.5


def test_mutual_knn_equals_the_loop():
    x, y = _randn(30, 5), _randn(30, 7, seed=1)
    k = 4

    def neighbours(z, i):
        z = F.normalize(z.double(), dim=-1)
        sims = [(float(z[i] @ z[j]), j) for j in range(len(z)) if j != i]
        return {j for _, j in sorted(sims, reverse=True)[:k]}
    loop = sum(len(neighbours(x, i) & neighbours(y, i)) / k for i in range(30)) / 30
    assert representations.mutual_knn(x, y, k) == pytest.approx(loop, abs=1e-12)
    assert representations.mutual_knn(x, 2 * x, k) == 1.0


def test_similarity_measures_reject_bad_input():
    with pytest.raises(ValueError, match="x and y"):
        representations.linear_cka(_randn(10, 3), _randn(11, 3))
    with pytest.raises(ValueError, match="k: got 10"):
        representations.mutual_knn(_randn(10, 3), _randn(10, 3), k=10)
    with pytest.raises(ValueError, match="constant"):
        representations.linear_cka(torch.ones(5, 3), _randn(5, 3))
    with pytest.raises(ValueError, match="at least 3"):
        representations.linear_cka(_randn(2, 3), _randn(2, 3))
