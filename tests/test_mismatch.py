"""tutorlib.evaluation.mismatch (lesson 06): partners drawn among the allowed scenes, and the
ROC AUC of matched against swapped tuples, against plain loops."""
import pytest
import torch
import torch.nn.functional as F

from tutorlib.evaluation import mismatch


def _allowed(seed=0):
    g = torch.Generator().manual_seed(seed)
    allowed = torch.rand(10, 10, generator=g) < 0.3
    allowed[3] = False                                            # a row without any partner
    return allowed


def test_random_partner_draws_an_allowed_column_in_row_order():
    allowed = _allowed()
    partner = mismatch.random_partner(allowed, torch.Generator().manual_seed(5))
    assert partner.dtype == torch.long and partner[3] == -1
    for i, j in enumerate(partner.tolist()):
        assert j == -1 if not allowed[i].any() else bool(allowed[i, j])
    g, loop = torch.Generator().manual_seed(5), []                   # the same draws, one row at a time
    for row in allowed:
        cols = row.nonzero()[:, 0]
        loop.append(int(cols[torch.randint(len(cols), (1,), generator=g)]) if len(cols) else -1)
    assert partner.tolist() == loop


def test_random_partner_continues_its_generator():
    allowed, g = _allowed(1), torch.Generator().manual_seed(2)
    first, second = mismatch.random_partner(allowed, g), mismatch.random_partner(allowed, g)
    again = torch.Generator().manual_seed(2)
    assert torch.equal(mismatch.random_partner(allowed, again), first)
    assert torch.equal(mismatch.random_partner(allowed, again), second)
    with pytest.raises(ValueError, match="allowed: got dtype"):
        mismatch.random_partner(allowed.float(), g)
    with pytest.raises(ValueError, match="generator: got int"):
        mismatch.random_partner(allowed, 0)


def _auc_loop(pos, neg):
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos.tolist() for n in neg.tolist())
    return wins / (len(pos) * len(neg))


def _setup(n=12, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    text = torch.randn(n, d, generator=g)
    feats = {m: text + 0.5 * torch.randn(n, d, generator=g) for m in ("image", "audio")}
    partner = torch.randint(n, (n,), generator=g)
    partner[[2, 7]] = -1
    return text, feats, partner


def heads(name, x):
    return F.normalize(x, dim=-1)


def score(t, x):
    return {"cosines": sum((t * m).sum(-1) for m in x.values()),
            "image only": (t * x["image"]).sum(-1)}


def _scored_by_loop(text, feats, partner):
    """(swapped member, score name, matched scores, swapped scores), one scene at a time."""
    keep = [i for i in range(len(text)) if partner[i] >= 0]
    t = heads("text", text[keep])
    members = {m: heads(m, f[keep]) for m, f in feats.items()}
    matched = score(t, members)
    for swapped in feats:
        wrong = score(t, {**members, swapped: heads(swapped, feats[swapped][partner[keep]])})
        for s in matched:
            yield swapped, s, matched[s], wrong[s]


def test_mismatch_auc_equals_the_loop_for_every_score_and_member():
    text, feats, partner = _setup()
    auc = mismatch.mismatch_auc(heads, text, feats, partner, score)
    assert list(auc.index) == ["cosines", "image only"] and list(auc.columns) == ["image", "audio"]
    for swapped, s, matched, wrong in _scored_by_loop(text, feats, partner):
        assert auc.loc[s, swapped] == pytest.approx(_auc_loop(matched, wrong))
    assert auc.loc["image only", "audio"] == 0.5                  # the score never looks at the sound


def test_a_swap_with_itself_is_invisible():
    text, feats, _ = _setup()
    itself = torch.arange(len(text))
    assert (mismatch.mismatch_auc(heads, text, feats, itself, score) == 0.5).all().all()


def test_mismatch_auc_validates():
    text, feats, partner = _setup()
    with pytest.raises(ValueError, match="partner: expected row indices"):
        mismatch.mismatch_auc(heads, text, feats, torch.full_like(partner, -1), score)
    with pytest.raises(ValueError, match=r"text and feats\['audio'\]: got 12 and 5 rows"):
        mismatch.mismatch_auc(heads, text, {**feats, "audio": feats["audio"][:5]}, partner, score)
    with pytest.raises(ValueError, match="score: got dict"):
        mismatch.mismatch_auc(heads, text, feats, partner, {})
    with pytest.raises(ValueError, match="feats: got list"):
        mismatch.mismatch_auc(heads, text, [feats["image"]], partner, score)


def test_paired_win_rate_equals_the_loop():
    text, feats, partner = _setup()
    win = mismatch.mismatch_auc(heads, text, feats, partner, score, measure="win rate")
    for swapped, s, matched, wrong in _scored_by_loop(text, feats, partner):
        loop = [1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(matched.tolist(), wrong.tolist())]
        assert win.loc[s, swapped] == pytest.approx(sum(loop) / len(loop))
    itself = torch.arange(len(text))
    assert (mismatch.mismatch_auc(heads, text, feats, itself, score, measure="win rate") == 0.5).all().all()
    with pytest.raises(ValueError, match="measure: got 'paired'"):
        mismatch.mismatch_auc(heads, text, feats, partner, score, measure="paired")


def test_null_se_matches_a_simulation():
    g = torch.Generator().manual_seed(0)
    n = 200
    aucs, wins = [], []
    for _ in range(400):                      # a blind score: matched and swapped from one law
        a, b = torch.randn(n, generator=g), torch.randn(n, generator=g)
        aucs.append(_auc_loop(a[:40], b[:40]))
        wins.append((a > b).float().mean().item())
    assert torch.tensor(aucs).std().item() == pytest.approx(mismatch.null_se(40, "auc"), rel=0.15)
    assert torch.tensor(wins).std().item() == pytest.approx(mismatch.null_se(n, "win rate"), rel=0.15)
    with pytest.raises(ValueError, match="n: got 0"):
        mismatch.null_se(0)
