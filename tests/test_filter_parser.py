"""The one filter parser (xreid.index.filters), message by message and at its boundaries (what the
mutation score found untested; the parser's main cases are in test_query_paths.py)."""

import numpy as np
import pytest

from xreid.index.filters import Filter, _as_list, attribute_violations, check_attribute_names, parse_filter

NAMES = ["personalMale", "carryingBackpack"]


def _message(*args, **kw) -> str:
    with pytest.raises(ValueError) as err:
        parse_filter(*args, **kw)
    return str(err.value)


def test_probability_thresholds_from_0_to_1_inclusive():
    for t in (0, 0.0, 0.25, 1, 1.0):
        assert parse_filter({"attributes": {"personalMale": t}}, NAMES).attributes == {"personalMale": t}
    assert _message({"attributes": {"personalMale": 1.5}}) == (
        "filter attribute 'personalMale': give true, false or a probability in [0, 1] (got 1.5)")
    assert parse_filter({"attributes": {"personalMale": True}}).attributes == {"personalMale": True}
    assert _message({"attributes": {"personalMale": None}}).endswith("(got None)")


def test_type_errors_name_the_type_given():
    assert _message({"attributes": ["personalMale"]}) == (
        "filter 'attributes' must be an object {name: true | false | probability}, not list")
    assert _message({"camera": {"a": 1}}) == "filter 'camera' must be a camera or a list of cameras, not dict"
    assert _message({"camera": ["1", 2.5]}) == "filter 'camera': each camera must be a string or a number, not float"
    assert _message({"after": [1]}) == "filter 'after' must be a time (ISO 8601 or seconds), not list"
    assert _message({"fields": ["north"]}) == "filter 'fields' must be an object {column: value or [values]}, not list"
    assert _message([1]) == "a filter must be an object {attributes, camera, after, before, fields}, not list"
    assert _message({"colour": 1, "size": 2}) == ("unknown filter key(s): colour, size (known: attributes, camera, "
                                                  "after, before, fields, mode)")
    assert _message({"after": "yesterday"}).startswith("filter 'after': ") and "'yesterday'" in _message({"after": "yesterday"})


def test_cameras_and_fields_as_given():
    assert parse_filter({"camera": "XXXX"}).camera == "XXXX"  # a camera named anything is kept
    assert parse_filter({"camera": ""}).camera is None
    f = parse_filter({"fields": {"site": ["north", "south"], "pid": "", "gate": "3"}}, field_names=["site", "gate", "pid"])
    assert f.fields == {"site": ["north", "south"], "gate": "3"}  # empty values are no condition
    assert _message({"fields": {"colour": "red"}}, field_names=["site", "gate"]) == (
        "filter: unknown field 'colour'; this gallery has: site, gate")
    assert _message({"fields": {"colour": "red"}}, field_names=[]) == "filter: unknown field 'colour'; this gallery has: none"
    assert _message({"fields": {"site": [True]}}).startswith("filter field 'site': give a value or a list of values")


def test_text_filters_split_at_the_first_equals_sign_and_skip_empty_items():
    f = parse_filter(" , site=a=b, personalMale=yes,", NAMES, ["site"])
    assert f.fields == {"site": "a=b"} and f.attributes == {"personalMale": True}
    assert _message("personalMale", NAMES) == "filter item 'personalMale': expected name=yes or name=no"
    assert _message("site=a,site=b", NAMES, ["site"]) == "filter: 'site' is named twice"
    assert _message("colour=red", NAMES, ["site", "gate"], source="index") == (
        "filter: unknown attribute 'colour'; known: personalMale, carryingBackpack (or a field of this index: "
        "site, gate)")
    assert _message("colour=red", NAMES) == "filter: unknown attribute 'colour'; known: personalMale, carryingBackpack"
    assert _message("colour=red", NAMES, ["site"]).endswith("(or a field of this gallery: site)")
    assert _message("personalmale=yes", NAMES) == "filter: unknown attribute 'personalmale' (did you mean personalMale?)"
    # without a list of attribute names any name is taken as an attribute
    assert parse_filter("anything=no").attributes == {"anything": False}
    assert parse_filter({"attributes": {"colour": True}}).attributes == {"colour": True}
    assert _message({"attributes": {"colour": True}}, NAMES).startswith("filter: unknown attribute 'colour'")


def test_attribute_violations_count_every_broken_condition():
    p = np.array([[0.5, 0.2], [0.49, 0.9], [0.7, 0.7]])
    got = attribute_violations(p, NAMES, {"personalMale": True, "carryingBackpack": 0.7})
    assert got.dtype.kind == "i" and got.tolist() == [1, 1, 0]  # 0.5 is present; 0.7 meets ">= 0.7"
    assert attribute_violations(p, NAMES, {"personalMale": False, "carryingBackpack": 0.8}).tolist() == [2, 0, 2]
    with pytest.raises(ValueError, match="^filter: unknown attribute 'hat'; known: personalMale, carryingBackpack$"):
        attribute_violations(p, NAMES, {"hat": True})
    check_attribute_names([], NAMES)


def test_as_list():
    assert _as_list("3") == ["3"] and _as_list(3) == [3] and _as_list(0.5) == [0.5] and _as_list(("a", "b")) == ["a", "b"]
    assert parse_filter(Filter(camera="2"), mode="rerank").mode == "rerank"


def test_limits_hold_at_their_boundaries():
    from xreid.index.filters import MAX_SECONDS, MAX_TEXT, MAX_VALUES

    edge, over = "x" * MAX_TEXT, "x" * (MAX_TEXT + 1)
    assert parse_filter({"camera": edge, "fields": {"site": [edge]}}).camera == edge
    assert _message({"camera": over}) == f"filter 'camera': at most {MAX_TEXT} characters per value"
    assert _message({"fields": {"site": over}}) == f"filter field 'site': at most {MAX_TEXT} characters per value"
    assert _message({"after": over}) == f"filter 'after': at most {MAX_TEXT} characters"
    assert len(parse_filter({"camera": ["1"] * MAX_VALUES}).camera) == MAX_VALUES
    assert _message({"camera": ["1"] * (MAX_VALUES + 1)}) == f"filter 'camera': at most {MAX_VALUES} values"
    assert parse_filter({"attributes": {edge: True}}).attributes == {edge: True}
    assert _message({"attributes": {over: True}}) == (
        f"filter 'attributes': each name must be a string of at most {MAX_TEXT} characters")
    assert _message({"fields": {1: "a"}}).startswith("filter 'fields': each name must be a string")
    assert _message({"attributes": {str(i): True for i in range(MAX_VALUES + 1)}}) == (
        f"filter 'attributes': at most {MAX_VALUES} names")
    for t in (MAX_SECONDS, -MAX_SECONDS, int(MAX_SECONDS), str(MAX_SECONDS)):
        assert parse_filter({"after": t}).after == t
    within = f"filter 'before': a number of seconds within +-{MAX_SECONDS:.0e}"
    for t in (MAX_SECONDS * 1.0001, -int(MAX_SECONDS) - 1, float("inf"), float("nan"), 10**400, "2e11"):
        assert _message({"before": t}) == within, t
    assert parse_filter({"camera": [2**63, -2**63]}).camera == [2**63, -2**63]
    assert _message({"camera": 2**63 + 1}) == "filter 'camera': integer too large"
    assert _message({"fields": {"site": 1.0}}) == ("filter field 'site': give a value or a list of values (strings or "
                                                   "integers), not float")
    assert _message({"attributes": {"a": "x" * 50}}).endswith("(got str)")  # a long value is named by its type
    assert _message({"mode": "x" * 50}) == "filter mode must be 'rerank' or 'keep', not str"
