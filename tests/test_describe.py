"""Search by description: the parser (words -> attributes), the ranking formula, the index search."""

from __future__ import annotations

import pytest

from xreid.data.peta import EXPLANATION_ATTRIBUTES
from xreid.data.vocabulary import _MARKET_WORDS, _PETA_WORDS
from xreid.explain.describe import parse_description, phrase, terms_text

PETA = [w.name for w in _PETA_WORDS]  # the full 105-name vocabulary (has personalFemale)
BUNDLED = list(EXPLANATION_ATTRIBUTES)  # the bundled head's 57 (no personalFemale, no hair colours)
MARKET = [w.name for w in _MARKET_WORDS]


def pairs(text, names=PETA):
    return [(t.name, t.wanted) for t in parse_description(text, names).terms]


def test_the_issue_example():
    d = parse_description("woman, red top, backpack, no hat", PETA)
    assert [(t.name, t.wanted) for t in d.terms] == [
        ("personalFemale", True), ("upperBodyRed", True), ("carryingBackpack", True), ("accessoryHat", False)]
    assert d.problems == []
    # the bundled head has no personalFemale: "woman" is "not a man" there
    assert pairs("woman", BUNDLED) == [("personalMale", False)]
    assert pairs("woman", MARKET) == [("female", True)]


@pytest.mark.parametrize("text, expected", [
    ("lady", [("personalFemale", True)]),
    ("a guy", [("personalMale", True)]),
    ("rucksack", [("carryingBackpack", True)]),
    ("coat", [("upperBodyJacket", True)]),
    ("trainers", [("footwearSneakers", True)]),
    ("blue jeans", [("lowerBodyBlue", True), ("lowerBodyJeans", True)]),
    ("black shoes", [("footwearBlack", True)]),  # the plain word: colour only
    ("shoes", [("footwearShoes", True)]),
    ("long hair", [("hairLong", True)]),
    ("long black hair", [("hairBlack", True), ("hairLong", True)]),
    ("navy T-shirt", [("upperBodyBlue", True), ("upperBodyTshirt", True)]),
    ("grey trousers", [("lowerBodyGrey", True)]),
    ("gray top", [("upperBodyGrey", True)]),
    ("top: red", [("upperBodyRed", True)]),
    ("red and white top", [("upperBodyRed", True), ("upperBodyWhite", True)]),
    ("short-sleeved", [("upperBodyShortSleeve", True)]),
])
def test_synonyms_and_colours(text, expected):
    assert pairs(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("no hat", [("accessoryHat", False)]),
    ("without backpack", [("carryingBackpack", False)]),
    ("not carrying a backpack", [("carryingBackpack", False)]),
    ("doesn't wear a hat", [("accessoryHat", False)]),
    ("no hat or scarf", [("accessoryHat", False), ("accessoryMuffler", False)]),
    ("no hat, scarf", [("accessoryHat", False), ("accessoryMuffler", True)]),  # the comma ends the negation
    ("no hat and a backpack", [("accessoryHat", False), ("carryingBackpack", True)]),
    ("not a red top", [("upperBodyRed", False)]),
    ("not carrying anything", [("carryingNothing", True)]),  # a phrase of its own
    ("no accessories", [("accessoryNothing", True)]),
])
def test_negations(text, expected):
    assert pairs(text) == expected


def test_words_that_match_nothing_are_said_back():
    d = parse_description("woman, fluffy, green", PETA)
    assert pairs("woman", PETA) == [(t.name, t.wanted) for t in d.terms]
    assert d.unmatched[0] == "fluffy"
    assert d.unmatched[1].startswith("green (the colour of what?")


def test_attributes_the_vocabulary_lacks_are_said_back():
    d = parse_description("black hair, glasses, backpack", BUNDLED)
    assert pairs("black hair, glasses, backpack", BUNDLED) == [("carryingBackpack", True)]
    assert d.unavailable == ["black hair", "glasses"]
    assert any("no attribute for 'glasses'" in p for p in d.problems)


def test_contradictions_are_named_and_left_out():
    d = parse_description("woman, backpack, man, rucksack", PETA)
    assert [(t.name, t.wanted) for t in d.terms] == [("carryingBackpack", True)]  # backpack twice: one term
    assert d.contradictions == ["woman / man"]
    d = parse_description("backpack, no rucksack, hat", BUNDLED)
    assert pairs("backpack, no rucksack, hat", BUNDLED) == [("accessoryHat", True)]
    assert d.contradictions == ["backpack / no rucksack"]
    # same attribute from two sides: woman = not male on the bundled vocabulary
    assert parse_description("woman, man", BUNDLED).contradictions == ["woman / man"]
    assert parse_description("carrying nothing, backpack", PETA).contradictions == ["carrying nothing / backpack"]


def test_typos_are_corrected_and_reported():
    d = parse_description("womn with a backpak and jeens", PETA)
    assert [(t.name, t.wanted) for t in d.terms] == [
        ("personalFemale", True), ("carryingBackpack", True), ("lowerBodyJeans", True)]
    assert [typed for typed, _ in d.corrections] == ["womn", "backpak", "jeens"]
    assert d.corrections[1:] == [("backpak", "backpack"), ("jeens", "jeans")]  # "womn": woman or women
    # one edit: swapped neighbours (also in 3-letter words), a letter changed / added / dropped in longer ones
    d = parse_description("mna, tpo: rde, hiar lnog, bleu jeens, plastik bag", PETA)
    assert d.corrections == [("mna", "man"), ("tpo", "top"), ("rde", "red"), ("hiar", "hair"), ("lnog", "long"),
                             ("bleu", "blue"), ("jeens", "jeans"), ("plastik", "plastic")]
    assert pairs("mna, rde tpo, bleu jeens, plastik bag") == [
        ("personalMale", True), ("upperBodyRed", True), ("lowerBodyBlue", True), ("lowerBodyJeans", True),
        ("carryingPlasticBags", True)]
    assert parse_description("cat", PETA).unmatched == ["cat"]  # 3 letters: a swap only, never "cap"
    # short words and filler are never "corrected"
    assert parse_description("wearing a cap", PETA).corrections == []
    assert parse_description("xyzzy", PETA).unmatched == ["xyzzy"]


def test_cameras_and_times_are_pointed_to_the_filters():
    d = parse_description("man near camera 3 around 14:00", PETA)
    assert pairs("man near camera 3 around 14:00") == [("personalMale", True)]
    assert d.unmatched == [] and "filters" in d.notes[0]


@pytest.mark.parametrize("names", [PETA, BUNDLED, MARKET], ids=["peta", "bundled", "market"])
def test_every_attribute_has_words_that_parse_back(names):
    for n in names:
        for wanted in (True, False):
            text = phrase(n, wanted, names)
            d = parse_description(text, names)
            assert [(t.name, t.wanted) for t in d.terms] == [(n, wanted)], text
            assert d.problems == [], text


def test_terms_text_round_trip():
    terms = [("personalMale", False), ("upperBodyRed", True), ("carryingBackpack", True), ("accessoryHat", False)]
    text = terms_text(terms, BUNDLED)
    assert text == "woman, red top, backpack, no hat"
    assert pairs(text, BUNDLED) == terms


# --- the ranking formula -----------------------------------------------------------------------------

import math  # noqa: E402

import numpy as np  # noqa: E402

from xreid.explain.description_score import (  # noqa: E402
    RULES, description_scores, evidence, reduce_tables, score_tables, status, term_weights)


def test_scores_by_hand():
    p = np.array([[0.9, 0.2], [0.6, 0.5]])  # two images, terms: backpack (wanted), hat (not wanted)
    wanted, w = [True, False], np.array([1.0, 1.0])
    # q = [[0.9, 0.8], [0.6, 0.5]]
    assert description_scores(p, wanted, w, "product") == pytest.approx([0.72, 0.30])
    assert description_scores(p, wanted, w, "geomean") == pytest.approx([math.sqrt(0.72), math.sqrt(0.30)])
    assert description_scores(p, wanted, w, "min") == pytest.approx([0.8, 0.5])
    assert description_scores(p, wanted, w, "mean") == pytest.approx([0.85, 0.55])
    # an unreliable hat at weight 0.5: product 0.9 * 0.8 ** 0.5; geomean its (1 / 1.5) power; min ignores weight 0
    w = np.array([1.0, 0.5])
    assert description_scores(p, wanted, w, "product")[0] == pytest.approx(0.9 * 0.8 ** 0.5)
    assert description_scores(p, wanted, w, "geomean")[0] == pytest.approx((0.9 * 0.8 ** 0.5) ** (1 / 1.5))
    assert description_scores(p, wanted, np.array([1.0, 0.0]), "min") == pytest.approx([0.9, 0.6])
    assert description_scores(p, wanted, w, "mean")[0] == pytest.approx((0.9 + 0.5 * 0.8) / 1.5)


def test_weights_from_reliability():
    assert term_weights([0.9, 0.55, float("nan")], 3, unreliable_weight=0.25).tolist() == [1.0, 0.25, 0.25]
    assert term_weights(None, 2).tolist() == [1.0, 1.0]


@pytest.mark.parametrize("rule", RULES)
def test_tables_equal_the_formula(rule):
    rng = np.random.default_rng(0)
    levels = (np.arange(256) + 0.5) / 256
    codes = rng.integers(0, 256, (3, 50))
    wanted, w = [True, False, True], np.array([1.0, 0.5, 1.0])
    tables = score_tables(levels, wanted, w, rule)
    got = reduce_tables([tables[t][codes[t]] for t in range(3)], w, rule)
    assert got == pytest.approx(description_scores(levels[codes].T, wanted, w, rule))


def test_evidence_statuses():
    assert [status(q) for q in (0.6, 0.59, 0.41, 0.4)] == ["met", "unsure", "unsure", "not met"]
    ev = evidence(np.array([0.9, 0.7]), ["carryingBackpack", "accessoryHat"], [True, False], ["backpack", "no hat"],
                  np.array([1.0, 0.5]), [True, False])
    assert [(e.status, round(e.probability, 2), e.reliable) for e in ev] == [("met", 0.9, True), ("not met", 0.3, False)]
    from xreid.rendering.description import reason_line
    assert reason_line(ev) == ("Fits 1 of 2 described attributes: backpack 90 %. Does not fit: no hat 30 %. "
                               "Counted at weight 0.5 (the model is unreliable on it): no hat.")


def test_lookalike_smoothing_by_hand():
    from xreid.explain.description_score import lookalike_smoothed

    p = np.array([[0.9, 0.2], [0.5, 0.6], [0.1, 1.0]])
    nb = np.array([[1, 2], [0, -1], [-1, -1]])  # row 1 has one look-alike, row 2 none
    got = lookalike_smoothed(p, nb, weight=0.5)
    # row 0: 0.5 [0.9, 0.2] + 0.5 mean([0.5, 0.6], [0.1, 1.0]) = [0.45 + 0.15, 0.1 + 0.4]
    assert got[0] == pytest.approx([0.6, 0.5])
    assert got[1] == pytest.approx([0.7, 0.4])  # 0.5 [0.5, 0.6] + 0.5 [0.9, 0.2]
    assert got[2] == pytest.approx([0.1, 1.0])  # no look-alike: its own
    assert lookalike_smoothed(p, nb, weight=0.0) == pytest.approx(p)
    assert lookalike_smoothed(p, np.zeros((3, 0), int)) == pytest.approx(p)
    ev = evidence(got[0], ["a", "b"], [True, False], ["a", "no b"], np.ones(2), [True, True], own=p[0])
    assert [(round(e.probability, 2), round(e.own, 2)) for e in ev] == [(0.6, 0.9), (0.5, 0.8)]
    assert ev[0].to_dict()["own"] == 0.9 and "own" not in evidence(p[0], ["a"], [True], ["a"], np.ones(1),
                                                                     [True])[0].to_dict()


def test_nearest_rows_exact_by_hand_and_through_the_ann():
    from xreid.index.ann import AnnIndex
    from xreid.index.lookalikes import nearest_rows

    v = np.array([[1, 0], [0.8, 0.6], [0, 1], [-1, 0]], np.float32)  # cosines: 0-1 0.8, 1-2 0.6, 0-2 0
    assert nearest_rows(v, 2).tolist() == [[1, 2], [0, 2], [1, 0], [2, 1]]  # 3: cos -0.8 to 1 > -1 to 0: [2, 1]
    assert nearest_rows(v, 2, usable=np.array([True, False, True, True])).tolist() == [[2, 3], [-1, -1], [0, 3], [2, 0]]
    assert nearest_rows(v[:2], 3).tolist() == [[1, -1, -1], [0, -1, -1]]
    assert nearest_rows(v[:0], 3).shape == (0, 3)
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((300, 16))
    x = centres[rng.integers(0, 300, 3000)] + 0.2 * rng.standard_normal((3000, 16))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    exact = nearest_rows(x, 4, block=500)
    from xreid.index.lookalikes import extend_nearest

    first, sims = nearest_rows(x[:2000], 4, similarity=True)
    grown, _ = extend_nearest(x, first, sims)
    assert (grown == exact).all()  # 1,000 rows added: the update equals a full search
    ann = nearest_rows(x, 4, ann=AnnIndex.build(x, nlist=16), block=500)
    assert (ann == exact).mean() > 0.95 and (exact[:, 0] != np.arange(3000)).all()


def test_describe_this_person():
    from xreid.explain.describe import description_of

    names = ["personalMale", "hairLong", "carryingBackpack", "accessoryHat", "upperBodyRed", "upperBodyBlue",
             "upperBodyShortSleeve"]
    p = [0.1, 0.9, 0.95, 0.55, 0.7, 0.8, 0.2]
    reliable = [True, True, False, True, True, True, True]
    # the backpack is unreliable, the hat unsure, blue beats red, "not male" reads "woman", "not short sleeves"
    # reads "long sleeves"; a surely-absent backpack would not be said ("no backpack" is not a description)
    text = description_of(names, p, reliable)
    assert text == "woman, long hair, long sleeves, blue top"
    assert pairs(text, names) == [("personalMale", False), ("hairLong", True), ("upperBodyShortSleeve", False),
                                  ("upperBodyBlue", True)]
