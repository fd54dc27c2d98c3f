"""The explanation an analyst reads: words for attributes, calibrated and reliable attributes, what a
result's line names, the query check, and the report's structure."""

import re

import numpy as np
import pytest
from PIL import Image, ImageFilter

from xreid.data.market import MARKET_ATTRIBUTES
from xreid.data.peta import VOCABULARY
from xreid.data.vocabulary import GROUPS, WORDS, words
from xreid.explain.calibration import apply_platt, fit_platt, reliability, sigmoid
from xreid.explain.naming import (VERDICT_AT, candidates, difference_probability, first_named, rank_differences,
                                  summarise_pair)
from xreid.explain.query_check import check_query
from xreid.rendering.words import describe, query_chips, result_line


@pytest.mark.parametrize("name", sorted(set(VOCABULARY) | set(MARKET_ATTRIBUTES)))
def test_every_dataset_attribute_has_words_and_a_group(name):
    assert name in WORDS, f"{name} has no display words"
    w = words(name)
    assert w.group in GROUPS and w.present and w.absent
    assert not re.search(r"[a-z][A-Z]", w.present), w.present  # no dataset identifiers in the words


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
    assert page.count('class="card querycard"') == 1
    assert len(re.findall(r'<div class="card (match|nomatch|)">', page)) == len(out.results) == 2
    assert page.count('<p class="line">') == 2 and page.count("<details>") == 2
    assert "Unreliable for this model" in page and "backpack" in page.split("Unreliable for this model")[1][:200]
    assert "regions that make these two look alike" in page and "high: drives the match" in page
    assert "@media print" in page and "http://" not in page and "https://" not in page
    assert "carryingBackpack" in page  # dataset names stay findable in the details


@pytest.mark.shared
def test_top10_report_without_maps_is_under_1mb(shared_data_root, tmp_path):
    import xreid

    out, page = _report("default", xreid.load_head(), shared_data_root, tmp_path, test_set="VIPeR", query_index=3)
    assert len(out.results) == 10 and len(page.encode()) < 1_000_000
