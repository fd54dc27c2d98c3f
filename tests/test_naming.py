"""What an explanation names (xreid.explain.naming), at the exact thresholds of docs/METHODS.md#naming-differences.

Every input below sits on a threshold, with values exact in binary floating point (0.25, 0.75, 0.8 = 1 - 0.2,
...), so a ``>=`` turned into ``>`` (or the reverse) or a threshold moved changes the answer. Expected values
are worked out by hand in the comments, never taken from the functions under test.
"""

import numpy as np
import pytest

from xreid.explain.naming import (AGREE_AT, LIST_AT, MIN_SHARE, RELIABLE_AT, VERDICT_AT, candidates,
                                  difference_probability, first_named, rank_agreements, rank_differences,
                                  summarise_pair)


def test_thresholds_are_the_documented_ones():
    # docs/METHODS.md#naming-differences; the tests below are built on these values
    assert (RELIABLE_AT, MIN_SHARE, VERDICT_AT, LIST_AT, AGREE_AT) == (0.6, 1.5, 0.8, 0.5, 0.75)


def test_a_part_of_exactly_one_and_a_half_times_the_mean_is_a_candidate():
    # parts (0.75, 0.25): mean 0.5, 1.5 x mean = 0.75 exactly -> attribute 0 qualifies, attribute 1 does not
    parts = np.array([0.75, 0.25])
    assert candidates(parts, np.ones(2, bool)).tolist() == [True, False]
    # just below the bar: (0.74, 0.26) has mean 0.5 again and 0.74 < 0.75
    assert candidates(np.array([0.74, 0.26]), np.ones(2, bool)).tolist() == [False, False]
    # an unreliable attribute is never a candidate, however large its part
    assert candidates(parts, np.array([False, True])).tolist() == [False, False]
    # a zero part is not a candidate even when the bar is zero (all parts zero)
    assert candidates(np.zeros(3), np.ones(3, bool), 1.5).tolist() == [False, False, False]
    # per pair along the last axis: pair 1's mean is 1.0 -> bar 1.5
    many = np.array([[0.75, 0.25], [1.5, 0.5]])
    assert candidates(many, np.ones(2, bool)).tolist() == [[True, False], [True, False]]


def test_first_named_at_the_share_boundary():
    p_q = np.array([0.0, 0.0])
    p_g = np.array([[1.0, 1.0], [1.0, 1.0]])  # both attributes surely differ (P = 1)
    parts = np.array([[0.75, 0.25], [0.25, 0.75]])
    assert first_named(p_q, p_g, parts, np.ones(2, bool)).tolist() == [0, 1]
    assert first_named(p_q, p_g, parts, np.array([True, False])).tolist() == [0, -1]


def test_verdict_needs_a_difference_of_at_least_0_8():
    names = ["a", "b", "c", "d"]
    # P(differ) = p_q (1 - p_g) + (1 - p_q) p_g with p_q = 0: exactly p_g -> 0.8, 0.6, 0.5, 0.0
    p_q = np.array([0.0, 0.0, 0.0, 0.0])
    p_g = np.array([0.8, 0.6, 0.5, 0.0])
    parts = np.array([0.25, 0.25, 0.25, 0.0])  # mean 0.1875, bar 0.28125: no part qualifies at 1.5 ...
    reliable = np.ones(4, bool)
    assert summarise_pair(names, p_q, p_g, parts, 1.0, reliable).differences == []
    parts = np.array([1.0, 1.0, 1.0, 0.0])  # mean 0.75, bar 1.125: still none
    assert summarise_pair(names, p_q, p_g, parts, 1.0, reliable).differences == []
    # ... so give each its own pair: a lone part of 1.0 among zeros (mean 0.25, bar 0.375) qualifies
    for a, (listed, verdict) in enumerate([(True, True), (True, False), (True, False), (False, False)]):
        parts = np.zeros(4)
        parts[a] = 1.0
        s = summarise_pair(names, p_q, p_g, parts, 2.0, reliable)
        assert [d.name for d in s.differences] == ([names[a]] if listed else []), a
        assert s.verdict == ([names[a]] if verdict else []), a
        if listed:
            assert s.differences[0].p_differ == pytest.approx(p_g[a]) and s.differences[0].share == 0.5


def test_a_difference_of_0_6_is_listed_without_a_verdict():
    names = ["backpack", "hat"]
    p_q, p_g = np.array([0.0, 0.5]), np.array([0.6, 0.5])  # P(differ) 0.6 and 0.5
    s = summarise_pair(names, p_q, p_g, np.array([0.75, 0.25]), 1.0, np.ones(2, bool))
    assert [d.name for d in s.differences] == ["backpack"] and s.verdict == []


def test_agreements_at_exactly_0_75_and_never_for_an_unreliable_attribute():
    # both images hold each attribute with at least min(p_q, p_g): 0.75 (on the bar), 0.9, 0.7 (below), 0.95
    p_q = np.array([0.75, 0.9, 0.9, 0.95])
    p_g = np.array([0.9, 0.95, 0.7, 1.0])
    reliable = np.array([True, True, True, False])  # attribute 3, shared most surely, is unreliable
    assert rank_agreements(p_q, p_g, reliable) == [1, 0]  # most certain first (0.9, then 0.75)
    assert rank_agreements(p_q, p_g, np.ones(4, bool)) == [3, 1, 0]
    assert rank_agreements(p_q, p_g, np.zeros(4, bool)) == []
    s = summarise_pair(["a", "b", "c", "d"], p_q, p_g, np.zeros(4), 0.0, reliable)
    assert [e.name for e in s.agreements] == ["b", "a"]
    assert all(e.reliable for e in s.agreements) and all(e.share == 0.0 for e in s.agreements)


def test_differences_are_ordered_by_probability_and_cut_at_top():
    names = list("abcde")
    p_q = np.zeros(5)
    p_g = np.array([0.6, 0.9, 0.7, 1.0, 0.55])
    parts = np.array([1.0, 1.0, 1.0, 1.0, 1.0])  # all equal: the bar is 1.5 x 1.0, nothing qualifies ...
    assert rank_differences(p_q, p_g, parts, np.ones(5, bool)) == []
    # ... with min_share 1.0 every part sits exactly on the bar and all qualify, most likely first
    assert rank_differences(p_q, p_g, parts, np.ones(5, bool), min_share=1.0) == [3, 1, 2, 0, 4]
    parts = np.array([1.0, 1.0, 1.0, 1.0, 0.0])  # mean 0.8, bar 1.2 at the default: none; at 1.25 x: all but e
    assert rank_differences(p_q, p_g, parts, np.ones(5, bool), min_share=1.25) == [3, 1, 2, 0]
    s = summarise_pair(names, p_q, p_g, np.array([1.0, 1.0, 1.0, 1.0, 0.0]) * [0, 1, 1, 1, 0], 3.0,
                       np.ones(5, bool), top=2)  # parts (0, 1, 1, 1, 0): mean 0.6, bar 0.9 -> b, c, d
    assert [d.name for d in s.differences] == ["d", "b"] and s.verdict == ["d", "b"]


def test_difference_probability_is_symmetric_and_exact_on_binary_fractions():
    assert difference_probability(0.0, 0.8) == 0.8 and difference_probability(1.0, 0.2) == 0.8
    assert difference_probability(0.25, 0.5) == 0.5  # 0.25 * 0.5 + 0.75 * 0.5
    assert difference_probability(0.25, 0.75) == 0.25 * 0.25 + 0.75 * 0.75
    np.testing.assert_array_equal(difference_probability(np.array([0.25, 1.0]), np.array([0.75, 0.0])),
                                  [0.625, 1.0])


def test_candidates_take_each_pairs_own_mean_and_return_booleans():
    # pair 0: mean 0.5, bar 0.75; pair 1: mean 2.0, bar 3.0 (a per-column bar would be 0.75 and 3.0 here,
    # which lets pair 1's first attribute through)
    parts = np.array([[0.75, 0.25], [1.0, 3.0]])
    assert candidates(parts, np.ones(2, bool)).tolist() == [[True, False], [False, True]]
    three = np.array([[0.75, 0.25], [1.0, 3.0], [0.0, 0.0]])  # more pairs than attributes
    assert candidates(three, np.ones(2, bool)).tolist() == [[True, False], [False, True], [False, False]]
    # reliability given as 0/1 still gives a boolean answer
    out = candidates(np.array([0.75, 0.25]), [1, 1])
    assert out.dtype == bool and out.tolist() == [True, False]


def test_first_named_is_the_most_likely_difference_among_the_candidates():
    p_q = np.zeros(4)
    p_g = np.array([[0.6, 0.9, 0.0, 0.0], [0.9, 0.6, 0.0, 0.0]])
    parts = np.array([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]])  # mean 0.5, bar 0.75: attributes 0 and 1
    assert first_named(p_q, p_g, parts, np.ones(4, bool)).tolist() == [1, 0]
    # one pair given as plain vectors
    assert first_named(p_q, p_g[0], parts[0], np.ones(4, bool)).tolist() == [1]
    assert first_named(p_q, p_g[0], np.zeros(4), np.ones(4, bool)).tolist() == [-1]


def test_equally_likely_attributes_keep_their_order():
    # 40 attributes, ties everywhere (an unstable sort reorders ties in arrays this long)
    n = 40
    p_g = np.where(np.arange(n) % 3 == 0, 0.9, 0.6)
    parts = np.ones(n)
    order = rank_differences(np.zeros(n), p_g, parts, np.ones(n, bool), min_share=1.0)
    expected = [a for a in range(n) if a % 3 == 0] + [a for a in range(n) if a % 3]
    assert order == expected
    both = np.where(np.arange(n) % 3 == 0, 0.95, 0.8)
    assert rank_agreements(both, both, np.ones(n, bool)) == expected


def test_a_summary_lists_three_of_each_by_default_and_shares_of_the_distance():
    names = list("abcdef")
    p_q = np.array([0.0, 0.0, 0.0, 0.0, 1.0, 1.0])
    p_g = np.array([1.0, 0.9, 0.85, 0.8, 1.0, 1.0])  # four sure differences, two sure agreements
    parts = np.array([0.5, 0.5, 0.5, 0.5, 0.0, 0.0])  # mean 1/3, bar 0.5: the four differences qualify
    s = summarise_pair(names, p_q, p_g, parts, 0.5, np.ones(6, bool))
    assert [d.name for d in s.differences] == ["a", "b", "c"] and s.verdict == ["a", "b", "c"]
    assert [d.share for d in s.differences] == [1.0, 1.0, 1.0]  # part 0.5 of a distance 0.5
    assert [a.name for a in s.agreements] == ["e", "f"]
    more = summarise_pair(names + ["g", "h"], np.ones(8), np.ones(8), np.zeros(8), 0.5, np.ones(8, bool))
    assert len(more.agreements) == 3
    # a distance at the 1e-12 floor counts as zero: no share is computed from it
    tiny = summarise_pair(names, p_q, p_g, parts * 1e-12, 1e-12, np.ones(6, bool))
    assert [d.share for d in tiny.differences] == [0.0, 0.0, 0.0]
