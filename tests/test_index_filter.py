"""The index's filter building blocks (xreid.index.gallery): probability codes, attribute thresholds and
the code-set test, against plain-numpy oracles. (Filters acting inside a search: test_index.py and
test_properties.py.)"""

import numpy as np
import pytest

from xreid.index.gallery import _codes_in, encode_probabilities, threshold_code


def test_probability_codes_are_floor_256p_clipped_to_a_byte():
    codes = encode_probabilities([-0.1, 0.0, 0.5, 0.49999, 255 / 256, 1.0, 1.5])
    assert codes.dtype == np.uint8
    assert codes.tolist() == [0, 0, 128, 127, 255, 255, 255]


def test_threshold_codes_at_the_bounds_and_refusal():
    assert [threshold_code(t) for t in (0.0, 0.5, 0.9, 1 / 256, 1.0)] == [0, 128, 231, 1, 255]
    # a probability of exactly 1 (stored as code 255, the largest) passes a threshold of 1
    assert encode_probabilities([1.0, 255 / 256, 254.9 / 256]).tolist() == [255, 255, 254]
    assert [int(c) >= threshold_code(1.0) for c in encode_probabilities([1.0, 0.99])] == [True, False]
    for bad in (-0.01, 1.5):
        with pytest.raises(ValueError) as err:
            threshold_code(bad)
        assert str(err.value) == f"attribute threshold {bad} is not a probability in [0, 1]"


@pytest.mark.parametrize("n_hits", [0, 1, 7, 8, 9, 12, 20])
def test_codes_in_matches_isin_for_few_and_many_values(n_hits):
    # few values are compared one by one, many through a lookup table: both must give isin's answer
    rng = np.random.default_rng(n_hits)
    vocab = 25
    codes = rng.integers(0, vocab, 500).astype(np.int32)
    hits = sorted(rng.choice(vocab, n_hits, replace=False).tolist())
    got = _codes_in(codes, hits, vocab)
    assert got.dtype == bool and got.tolist() == np.isin(codes, hits).tolist()
