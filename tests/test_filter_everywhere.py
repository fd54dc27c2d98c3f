"""One filter check: the server and the command line refuse the same bad filters, with the same
parser's words (xreid.index.filters; the server's request schema delegates to it)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from test_index import NAMES, embedder, head_path, root  # noqa: F401  (fixtures)
from test_serve import case, client, session  # noqa: F401  (fixtures)
from xreid.cli import app
from xreid.index.filters import MAX_SECONDS, MAX_TEXT, MAX_VALUES, check_filter_value, parse_filter

LONG = "x" * (MAX_TEXT + 1)

#: (the command line's options, the search request's "filters", words both messages hold, the API's status)
BAD = [
    (["--camera", LONG], {"camera": LONG}, f"at most {MAX_TEXT} characters", 422),
    (["--camera", "1"] * (MAX_VALUES + 1), {"camera": ["1"] * (MAX_VALUES + 1)}, f"at most {MAX_VALUES} values", 422),
    (["--after", "9" * 400], {"after": "9" * 400}, f"filter 'after': at most {MAX_TEXT} characters", 422),
    (["--before", "1e12"], {"before": 1e12}, "filter 'before': a number of seconds within", 422),
    (["--before", "-1e12"], {"before": "-1e12"}, "filter 'before': a number of seconds within", 400),
    (["--after", "yesterday"], {"after": "yesterday"}, "'yesterday' is neither ISO 8601", 400),
    (["--filter", f"site={LONG}"], {"fields": {"site": LONG}}, "filter field 'site': at most", 422),
    (["--filter", "colour=yes"], {"attributes": {"colour": True}}, "unknown attribute 'colour'", 400),
    (["--filter", "personalMale=maybe"], {"attributes": {"personalMale": "maybe"}}, "personalMale", 422),
    (["--filter", "personalmale=yes"], {"attributes": {"personalmale": True}}, "did you mean personalMale", 400),
]


@pytest.mark.parametrize("options, filters, words, status", BAD, ids=[str(f)[:40] for _, f, _, _ in BAD])
def test_the_cli_and_the_server_refuse_the_same_filters(client, case, tiny_model, root, options, filters, words,
                                                        status):
    res = client.post("/api/search", json={"items": [0], "filters": filters})
    assert res.status_code == status and words in res.json()["detail"], res.text
    model = ["--model", str(tiny_model), "--backend", "torch"]
    out = CliRunner().invoke(app, ["index", "search", str(case), *model, "--query", str(root / "more" / "new0.png"),
                                   *options])
    assert out.exit_code == 2 and words in " ".join(out.output.split()), out.output


def test_the_shape_checks_are_the_parsers():
    for key, value in [("camera", 1.5), ("fields", []), ("attributes", []), ("after", float("nan")),
                       ("before", 10**400), ("fields", {"pid": float("nan")}), ("mode", "sometimes"),
                       ("attributes", {LONG: True}), ("fields", {"site": ["a"] * (MAX_VALUES + 1)})]:
        with pytest.raises(ValueError) as shape:
            check_filter_value(key, value)
        with pytest.raises(ValueError) as parsed:
            parse_filter({key: value})
        assert str(shape.value) == str(parsed.value) and key.rstrip("s") in str(shape.value)
    with pytest.raises(ValueError, match="unknown filter key"):
        check_filter_value("colour", "red")
    check_filter_value("after", "yesterday")  # reading a time is parse_filter's (the server's 400, as before)
    with pytest.raises(ValueError, match="neither ISO 8601"):
        parse_filter({"after": "yesterday"})
    with pytest.raises(ValueError, match="within"):
        parse_filter({"after": str(2 * MAX_SECONDS)})  # a number written as text meets the same limit
