"""The pictures and pages xreid writes (charts, the embedding-analysis page), checked by parsing them:
which elements there are, their attributes and text, and the geometry worked out by hand."""

import csv
import json

import pytest

from conftest import write_image
from htmltree import parse
from xreid.explain.embedding_analysis import DimRankList, DimsTableRow
from xreid.rendering.analysis import write_analysis
from xreid.rendering.charts import OTHER_COLOUR, PALETTE, RESIDUAL_COLOUR, bar_svg, composition, pie_svg


def test_pie_of_two_halves_is_two_semicircles_from_the_top():
    svg = parse(pie_svg([1.0, 1.0], ["#111111", "#222222"], size=110)).find("svg")
    assert svg.attrs["width"] == "110" and svg.attrs["viewbox"] == "0 0 110 110"
    paths = svg.find_all("path")
    assert [p.attrs["fill"] for p in paths] == ["#111111", "#222222"]
    # centre (55, 55), radius 53: the first slice runs from the top (55, 2) clockwise to the bottom (55, 108)
    assert paths[0].attrs["d"] == "M55.0,55.0 L55.00,2.00 A53.0,53.0 0 0 1 55.00,108.00 Z"
    assert paths[1].attrs["d"] == "M55.0,55.0 L55.00,108.00 A53.0,53.0 0 0 1 55.00,2.00 Z"


def test_pie_quarter_and_three_quarters_use_the_large_arc_flag():
    paths = parse(pie_svg([3.0, 1.0, 0.0], ["#a", "#b", "#c"], size=100)).find_all("path")
    assert len(paths) == 2  # the zero value draws nothing
    # 3/4 from the top (50, 2) to the left (2, 50), large arc; then 1/4 back to the top
    assert paths[0].attrs["d"] == "M50.0,50.0 L50.00,2.00 A48.0,48.0 0 1 1 2.00,50.00 Z"
    assert paths[1].attrs["d"] == "M50.0,50.0 L2.00,50.00 A48.0,48.0 0 0 1 50.00,2.00 Z"


def test_pie_of_one_value_is_a_disc_and_of_nothing_says_distance_0():
    svg = parse(pie_svg([0.0, 2.0], ["#a", "#b"], size=40)).find("svg")
    (disc,) = svg.find_all("circle")
    assert disc.attrs == {"cx": "20.0", "cy": "20.0", "r": "18.0", "fill": "#b"} and not svg.find_all("path")
    svg = parse(pie_svg([0.0, 0.0], ["#a", "#b"], size=40)).find("svg")
    assert svg.find("circle").attrs["fill"] == RESIDUAL_COLOUR and svg.find("text").text() == "distance 0"


def test_bar_widths_are_proportional_and_labels_escaped():
    slices = [("a <b>", 1.0, "#1"), ("c", 3.0, "#2"), ("rest", 0.0, "#3")]
    svg = parse(bar_svg(slices, width=200, height=10)).find("svg")
    rects = svg.find_all("rect")
    assert [(r.attrs["x"], r.attrs["width"], r.attrs["fill"]) for r in rects] == [
        ("0.00", "50.00", "#1"), ("50.00", "150.00", "#2"), ("200.00", "0.00", "#3")]
    assert [r.find("title").text() for r in rects] == ["a <b> 25 %", "c 75 %", "rest 0 %"]
    assert not svg.find_all("b")  # the label stayed text
    empty = parse(bar_svg([("x", 0.0, "#1")], width=20)).find("svg")
    assert [r.attrs["fill"] for r in empty.find_all("rect")] == [RESIDUAL_COLOUR]


def test_composition_names_the_largest_parts_then_the_others_then_the_residual():
    names = ["carryingBackpack", "personalMale", "hairLong", "upperBodyRed"]
    slices = composition([0.1, 0.4, 0.0, 0.2], 0.3, names, top=2)
    assert slices == [("man", 0.4, PALETTE[0]), ("red top", 0.2, PALETTE[1]),
                      ("other attributes", pytest.approx(0.1), OTHER_COLOUR),
                      ("not explained by attributes", 0.3, RESIDUAL_COLOUR)]
    # a zero part among the top is left out, and no "other" slice when the rest sums to 0
    assert [s[0] for s in composition([0.0, 0.5], 0.0, names[:2], top=5)] == ["man", "not explained by attributes"]


def test_analysis_page_structure(tmp_path):
    for i in range(3):
        write_image(tmp_path / "img" / f"{i}.jpg", seed=i)
    table = [DimsTableRow("personalMale", 7, 0.4567), DimsTableRow("a<b>", 0, 0.0), DimsTableRow("hairLong", 3, 0.25)]
    ranks = [DimRankList(5, [("personalMale", 0.5), ("hairLong", 0.25)], [("a<b>", -0.125)], ["0", "1", "2"],
                         [0.9, 0.5, 0.1]),
             DimRankList(9, [("hairLong", 1.0)], [("personalMale", -1.0)], ["2", "missing"], [0.3, 0.2])]
    index = write_analysis(tmp_path / "out", table, ranks, {str(i): tmp_path / "img" / f"{i}.jpg" for i in range(3)},
                           model="m<1>")
    doc = parse(index.read_text())
    assert doc.doctype.lower() == "doctype html"
    assert doc.find("title").text() == "xreid embedding analysis" and doc.find("h1").text() == "Embedding analysis: m<1>"
    rows = doc.find("table").find_all("tr")
    assert [[c.text() for c in r.find_all("th")] for r in rows[:1]] == [["attribute", "dims", "positive ratio"]]
    assert [[c.text() for c in r.find_all("td")] for r in rows[1:]] == [
        ["personalMale", "7", "45.7 %"], ["a<b>", "0", "0.0 %"], ["hairLong", "3", "25.0 %"]]
    # every picture and link the page names exists next to it
    srcs = [img.attrs["src"] for img in doc.find_all("img")]
    assert srcs == ["dims_per_attribute.png", "dim_5.png", "dim_9.png"]
    hrefs = [a.attrs["href"] for a in doc.find_all("a")]
    assert hrefs == ["dims_per_attribute.csv", "analysis.json"]
    for name in srcs + hrefs:
        assert (tmp_path / "out" / name).stat().st_size > 0, name
    assert [h.text() for h in doc.find_all("h3")] == ["Embedding dim 5", "Embedding dim 9"]
    first = doc.find_all("h3")[0].parent.children
    para = first[first.index(doc.find_all("h3")[0]) + 1]
    assert para.text() == "highest weights: personalMale (+0.50), hairLong (+0.25) lowest weights: a<b> (-0.12)"
    # the CSV and JSON hold the same table
    with open(tmp_path / "out" / "dims_per_attribute.csv", newline="") as fh:
        assert list(csv.reader(fh)) == [["attribute", "embedding_dims_top1", "positive_ratio"],
                                        ["personalMale", "7", "0.4567"], ["a<b>", "0", "0.0000"],
                                        ["hairLong", "3", "0.2500"]]
    data = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert data["model"] == "m<1>" and [r["dims"] for r in data["dims_per_attribute"]] == [7, 0, 3]
    assert [r["dim"] for r in data["rank_lists"]] == [5, 9]
