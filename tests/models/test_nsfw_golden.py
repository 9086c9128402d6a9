"""LAION's NSFW detectors, read without TensorFlow, agree with TensorFlow's own outputs.

``fixtures/nsfw_golden.npz`` holds 300 inputs per detector and the probabilities TensorFlow's
``serving_default`` signature gave for them (made once by ``fixtures/make_nsfw_golden.py`` in a
TensorFlow environment; see its docstring). Inputs cover float16 values (as LAION's dumps, which
hit the lookup vocabularies), float32 values (which miss them), and values drawn from each
categorical column's own vocabulary and from any vocabulary; their log-odds spread over the range.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import needs_shared

GOLDEN = Path(__file__).parent / "fixtures" / "nsfw_golden.npz"


@needs_shared("heads")
@pytest.mark.parametrize("name,dim", [("nsfw-l14", 768), ("nsfw-b32", 512)])
def test_nsfw_heads_match_tensorflow(name, dim):
    import workbench

    g = np.load(GOLDEN, allow_pickle=False)
    x, want = g[f"{name[-3:]}_x"], g[f"{name[-3:]}_p"]
    assert x.shape == (300, dim) and want.shape == (300,)
    assert want.min() < 1e-3 and want.max() > 0.9  # the fixture spans the probability range
    h = workbench.load_head(name)  # the normal path: fetched into the heads folder from the mirror
    got = h(x)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    for group in range(4):  # each kind of input on its own (float16, float32, own vocabulary, any)
        s = slice(75 * group, 75 * (group + 1))
        assert np.abs(got[s] - want[s]).max() <= 1e-5, group
    # the lookup matters: feeding the out-of-vocabulary index everywhere does not reproduce TensorFlow
    from workbench.models.nsfw import nsfw_detector_zip

    oov = nsfw_detector_zip(h.source, categorical="oov", dim=dim)(x)
    assert np.abs(oov - want).max() > 1e-2
