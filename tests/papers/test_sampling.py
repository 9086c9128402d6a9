import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.errors import WorkbenchError
from workbench.papers.sampling import hard_cap, sample, soft_cap, softmax, top

scores_st = st.lists(st.floats(-5, 5, allow_nan=False), min_size=1, max_size=60).map(np.array)


@settings(max_examples=60, deadline=None)
@given(scores=scores_st, frac=st.floats(0, 1), seed=st.integers(0, 2**31))
def test_counts_sum_to_n_and_are_reproducible(scores, frac, seed):
    n_top = int(frac * len(scores))
    c = top(scores, n_top)
    assert c.sum() == n_top and set(np.unique(c)) <= {0, 1}
    if 0 < n_top < len(scores):
        assert scores[c == 1].min() >= scores[c == 0].max()
    n = int(frac * 3 * len(scores))
    s = soft_cap(scores, n, 0.25, batch=7, seed=seed)
    assert s.sum() == n and np.array_equal(s, soft_cap(scores, n, 0.25, batch=7, seed=seed))
    h = hard_cap(scores, min(n, 3 * len(scores)), 3, seed=seed)
    assert h.sum() == min(n, 3 * len(scores)) and h.max(initial=0) <= 3
    assert np.array_equal(h, hard_cap(scores, min(n, 3 * len(scores)), 3, seed=seed))


@settings(max_examples=40, deadline=None)
@given(scores=scores_st, seed=st.integers(0, 2**31))
def test_one_soft_cap_batch_never_repeats_a_row(scores, seed):
    n = len(scores)
    c = soft_cap(scores, n, 1.0, batch=n, seed=seed)
    assert np.all(c == 1)  # without replacement within a batch
    c = soft_cap(scores, 2 * n, 1.0, batch=n, seed=seed)
    assert np.all(c == 2)


def test_soft_cap_follows_softmax_and_the_penalty_spreads_picks():
    z = np.array([2.0, 1.0, 0.0, 0.0, -1.0])
    # one pick per batch, no penalty: picks follow softmax(z)
    c = soft_cap(z, 20_000, penalty=0.0, batch=1, seed=3)
    assert np.allclose(c / c.sum(), softmax(z), atol=0.01)
    # the first draw of a batch of k is the top of z + Gumbel: a batch of 2 from a 3-row set
    # matches numpy's sequential sampling without replacement (the reference's rng.choice)
    z3 = np.array([1.5, 0.5, -0.5])
    ours = sum(soft_cap(z3, 2, 0.0, batch=2, seed=s) for s in range(6000)) / 6000
    rng = np.random.default_rng(0)
    ref = np.zeros(3)
    for _ in range(6000):
        ref[rng.choice(3, size=2, replace=False, p=softmax(z3))] += 1
    assert np.allclose(ours, ref / 6000, atol=0.03)
    # a penalty pushes repeated picks down: fewer repeats of the best row than without it
    big = np.array([5.0] + [0.0] * 99)
    assert soft_cap(big, 50, 0.25, batch=1, seed=0)[0] < soft_cap(big, 50, 0.0, batch=1, seed=0)[0]


def test_hard_cap_caps_and_redistributes():
    z = np.array([10.0, 0.0, 0.0, 0.0])
    c = hard_cap(z, 20, cap=15, seed=1)
    assert c[0] == 15 and c.sum() == 20
    with pytest.raises(WorkbenchError, match="cannot pick"):
        hard_cap(z, 61, cap=15)


def test_nan_scores_are_never_picked():
    z = np.array([np.nan, 1.0, np.nan, 0.0])
    for method in ("top", "soft-cap", "hard-cap"):
        c = sample(z, method, 2, cap=2)
        assert c[0] == c[2] == 0 and c.sum() == 2
    with pytest.raises(WorkbenchError, match="only 2 rows"):
        top(z, 3)
    with pytest.raises(WorkbenchError, match="unknown sampling method"):
        sample(z, "random", 1)
