"""The explanation an analyst reads: words for attributes, calibrated and reliable attributes, what a
result's line names, the query check, and the report's structure."""

import re

import numpy as np
import pytest
from PIL import Image, ImageFilter

from htmltree import parse

from xreid.data.market import MARKET_ATTRIBUTES
from xreid.data.peta import VOCABULARY
from xreid.data.vocabulary import GROUPS, WORDS, words
from xreid.explain.calibration import apply_platt, fit_platt, reliability, sigmoid
from xreid.explain.naming import (VERDICT_AT, candidates, difference_probability, first_named, rank_differences,
                                  summarise_pair)
from xreid.explain.query_check import check_query
from xreid.rendering.words import describe, query_chips, result_line


def test_every_dataset_attribute_has_words_and_a_group():
    # one table-driven check over every PETA and Market attribute; a failure lists every name at fault
    names = sorted(set(VOCABULARY) | set(MARKET_ATTRIBUTES))
    assert len(names) > 100
    problems = {}
    for name in names:
        if name not in WORDS:
            problems[name] = "no display words"
            continue
        w = words(name)
        if w.group not in GROUPS:
            problems[name] = f"group {w.group!r} is not one of GROUPS"
        elif not (w.present and w.absent):
            problems[name] = f"empty words: present {w.present!r}, absent {w.absent!r}"
        elif re.search(r"[a-z][A-Z]", w.present):
            problems[name] = f"dataset identifier in the words: {w.present!r}"
    assert not problems, problems


def test_absent_attributes_read_as_words():
    assert words("carryingBackpack").absent == "no backpack" and words("personalMale").absent == "woman"
    assert words("upperBodyBlue").exclusive == "top colour" and words("upperBodyBlue").present == "blue top"


def test_platt_recovers_a_known_calibration_and_stays_finite_on_one_class():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(20000, 2)) * 2
    y = rng.random((20000, 2)) < sigmoid(0.5 * z - 1.0)
    y[:, 1] = False  # never positive: the pull towards (1, 0) keeps it finite
    cal = fit_platt(z, y)
    assert cal[0] == pytest.approx([0.5, -1.0], abs=0.05)
    assert np.isfinite(cal).all() and apply_platt(z, cal)[:, 1].max() < 0.05


def test_reliability_is_balanced_accuracy_hand_computed():
    logits = np.array([[1.0], [1.0], [-1.0], [-1.0], [1.0]])
    labels = np.array([[True], [True], [True], [False], [False]])
    # TPR 2/3, TNR 1/2 -> 7/12
    assert reliability(logits, labels)[0] == pytest.approx(7 / 12)
    assert np.isnan(reliability(logits, np.ones((5, 1), bool))[0])


def test_difference_probability_hand_computed():
    assert difference_probability(0.9, 0.2) == pytest.approx(0.9 * 0.8 + 0.1 * 0.2)
    assert difference_probability(0.5, 0.5) == pytest.approx(0.5)
    assert difference_probability(1.0, 1.0) == 0.0


def test_only_reliable_attributes_holding_a_part_of_the_distance_are_named():
    p_q = np.array([0.95, 0.95, 0.95, 0.5])
    p_g = np.array([0.05, 0.05, 0.90, 0.5])
    parts = np.array([0.10, 0.30, 0.30, 0.10])  # mean 0.2: attribute 0 holds too little at 1.5 x mean
    reliable = np.array([True, False, True, True])
    assert candidates(parts, reliable, 1.0).tolist() == [False, False, True, False]
    assert rank_differences(p_q, p_g, parts, reliable, min_share=0.0) == [0, 3, 2]
    assert first_named(p_q, p_g[None], parts[None], reliable, 0.0).tolist() == [0]
    assert first_named(p_q, p_g[None], parts[None], np.zeros(4, bool), 0.0).tolist() == [-1]


def test_pair_summary_verdict_and_line():
    names = ["carryingBackpack", "upperBodyBlue", "upperBodyRed", "personalMale", "hairLong", "accessoryHat",
             "footwearSandals", "lowerBodyJeans"]
    p_q = np.array([0.9, 0.9, 0.05, 0.9, 0.5, 0.5, 0.5, 0.5])
    p_g = np.array([0.05, 0.05, 0.9, 0.9, 0.5, 0.5, 0.5, 0.5])
    parts = np.array([0.2, 0.2, 0.2, 0.01, 0.01, 0.01, 0.01, 0.01])  # 1.5 x mean part = 0.12
    s = summarise_pair(names, p_q, p_g, parts, distance=0.8, reliable=np.ones(8, bool))
    assert [d.name for d in s.differences][:2] == ["carryingBackpack", "upperBodyBlue"]
    assert all(d.p_differ >= VERDICT_AT for d in s.differences) and s.verdict
    assert [a.name for a in s.agreements] == ["personalMale"]
    line = result_line(s, names, p_q.tolist(), p_g.tolist())
    assert line.startswith("Probably not the same person: differs in backpack and top colour.")
    assert "backpack: yes / no" in line and "top: blue / red" in line and "Both: man." in line
    assert describe(s.differences[0], names, p_q, p_g) == "backpack: yes / no"


def test_same_person_gets_no_verdict():
    names = ["carryingBackpack", "personalMale"]
    p = np.array([0.9, 0.8])
    s = summarise_pair(names, p, p, np.array([0.1, 0.1]), 0.3, np.ones(2, bool))
    assert s.verdict == [] and s.differences == []
    assert "No reliable attribute clearly differs" in result_line(s, names, p.tolist(), p.tolist())


def test_query_chips_resolve_colours_of_one_part_and_grey_unreliable_ones():
    names = ["upperBodyBlack", "upperBodyBrown", "upperBodyBlue", "accessorySunglasses", "personalMale"]
    chips = query_chips(names, [0.8, 0.6, 0.1, 0.9, 0.9], [True, True, True, False, True])
    texts = {c.text: c for c in chips}
    assert "black top" in texts and "brown top" not in texts  # one colour per top ...
    assert "brown top" in texts["black top"].flagged  # ... the other likely one flagged
    assert texts["sunglasses"].reliable is False
    assert [c.group for c in chips] == sorted((c.group for c in chips), key=GROUPS.index)


def _photo_like(seed=0):
    rng = np.random.default_rng(seed)
    base = np.linspace(60, 160, 64)[None, :, None] * np.ones((128, 64, 3))  # a lit background ...
    base[20:110, 16:48] = rng.integers(40, 200, 3)  # ... behind a "person"
    base += rng.normal(0, 12, base.shape)
    img = Image.fromarray(base.clip(0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.7))
    return np.asarray(img)


def test_query_check_flags_unusable_crops_and_passes_a_person_like_one():
    good = _photo_like()
    assert check_query(good).usable, check_query(good)
    rng = np.random.default_rng(1)
    bad = {
        "uniform": np.full((128, 64, 3), (30, 60, 200), np.uint8),
        "noise": rng.integers(0, 256, (128, 64, 3), dtype=np.uint8),
        "blurred": np.asarray(Image.fromarray(good).filter(ImageFilter.GaussianBlur(8))),
    }
    occluded = good.copy()
    occluded[30:110] = 128
    bad["occluded"] = occluded
    for what, image in bad.items():
        result = check_query(image)
        assert not result.usable and what in " ".join(result.problems), (what, result)


def _report(model, head, root, tmp_path, maps=None, **kw):
    from xreid.models.loading import load_embedder
    from xreid.workflows.explain import explain, write_report

    out = explain(load_embedder(model, backend="torch"), head, data_root=root, protocol="peta-reid",
                  maps=maps, **kw)
    html_path = tmp_path / "r.html"
    write_report(out, html_path, tmp_path / "r.json")
    return out, html_path.read_text()


def test_report_structure(tiny_model, mini_peta, tmp_path):
    from xreid.explain.attribute_head import AttributeHead

    head = AttributeHead(["personalMale", "carryingBackpack", "upperBodyBlue", "upperBodyRed"],
                         np.random.default_rng(0).normal(size=(1280, 4)), np.full(4, 0.3), {},
                         calibration=np.tile([1.0, 0.0], (4, 1)), reliability=np.array([0.8, 0.55, 0.7, 0.7]))
    out, page = _report(str(tiny_model), head, mini_peta, tmp_path, maps="pair", test_set="VIPeR", query_index=0)
    doc = parse(page)
    assert doc.doctype.lower() == "doctype html"
    cards = [c for c in doc.find_all("div", cls="card") if c.parent.tag == "body"]
    assert ["querycard" in c.classes for c in cards] == [True, False, False]  # the query first, then each result
    query, results = cards[0], cards[1:]
    assert len(results) == len(out.results) == 2
    # the query card: its check, then the unreliable attributes in words (backpack: reliability 0.55 < 0.6)
    assert query.find("div", cls="verdict").text() == out.explanation.reliability
    assert [p.text() for p in query.find_all("p", cls="muted")] == [
        "Unreliable for this model (not used in verdicts): backpack."]
    for card, r in zip(results, out.results):
        assert card.classes <= {"card", "match", "nomatch"}
        assert card.find("span", cls="rank").text() == f"#{r.rank}"
        assert len(card.find_all("p", cls="line")) == 1 and len(card.find_all("details")) == 1
        assert card.find("img", cls="person").attrs["src"].startswith("data:image/jpeg;base64,")
        # the pair maps on the card, with their caption and colour scale
        figs = [f.find("figcaption").text() for f in card.find("div", cls="maps").find_all("figure")]
        assert "query: regions that make these two look alike" in figs
        assert card.find("div", cls="scale").find("span").text().startswith("high: drives the match")
        # the details: a pie and one table row per attribute (its words, then the dataset name), largest part first
        details = card.find("details")
        assert details.find("summary").text().startswith("Details") and details.find_all("svg")
        rows = details.find("table").find_all("tr")
        assert len(rows[0].find_all("th")) == 9 and len(rows) == 1 + 4
        assert {row.find("td").find("span", cls="muted").text() for row in rows[1:]} == set(head.names)
        shares = [float(row.find_all("td")[4].text()) for row in rows[1:]]
        assert shares == sorted(shares, reverse=True)
        unreliable = [row.find("td").find("span").text() for row in rows[1:] if "unreliable" in row.classes]
        assert unreliable == ["carryingBackpack"]
    assert "@media print" in doc.find("style").text()
    # opens offline: nothing the page loads or links to is on the network
    for node in doc.iter():
        for name in ("src", "href"):
            assert not (node.attrs.get(name) or "").startswith(("http:", "https:", "//")), node


@pytest.mark.shared
def test_top10_report_without_maps_is_under_1mb(shared_data_root, tmp_path):
    import xreid

    out, page = _report("default", xreid.load_head(), shared_data_root, tmp_path, test_set="VIPeR", query_index=3)
    assert len(out.results) == 10 and len(page.encode()) < 1_000_000
