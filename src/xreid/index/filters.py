"""The one search filter of xreid (``Filter``) and its one parser (``parse_filter``), used by
``xreid explain``, ``xreid index search`` and the server alike.

Meaning of an attribute condition, everywhere: ``name=yes`` keeps rows whose attribute probability
is >= 0.5, ``name=no`` those below 0.5, a number t those >= t. The probability is the attribute
head's calibrated one where the head has a calibration (the default head has), the raw one
otherwise; an index stores the calibrated probabilities it was built with (docs/METHODS.md,
"Attribute filtering").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

#: what a filter's mode may be: rows breaking an attribute condition are left out ("keep") or sink
#: below the others, by how many conditions they break ("rerank")
MODES = ("keep", "rerank")
KEYS = ("attributes", "camera", "after", "before", "fields", "mode")
#: limits on a filter's values from any source (command line, JSON request): longer text, more values
#: or times further from 1970 are mistakes, refused before anything runs
MAX_TEXT = 200
MAX_VALUES = 1000
#: times given as numbers are seconds since 1970: beyond this (year ~5138) they are a mistake
MAX_SECONDS = 1e11
_YES, _NO = ("yes", "1", "true"), ("no", "0", "false")


@dataclass(frozen=True)
class Filter:
    """Conditions a search result must meet (all of them):

    ``camera``: a camera or several (a value ``"3"`` matches ``"3"`` and any namespaced ``".../3"``);
    ``after`` / ``before``: time >= after, time < before (ISO 8601, seconds or datetime; images of
    unknown time never pass a time condition); ``attributes``: {name: True} for probability >= 0.5,
    False for < 0.5, or a number t for >= t (calibrated probabilities where the head has a
    calibration, raw otherwise); ``fields``: {column: value or values} equality on string fields
    (``pid`` and the CSV's other columns); ``mode``: "keep" (rows breaking an attribute condition
    are left out) or "rerank" (they sink below the others; other conditions always leave rows out)."""

    camera: str | int | Sequence[str | int] | None = None
    after: str | float | datetime | None = None
    before: str | float | datetime | None = None
    attributes: Mapping[str, bool | float] = field(default_factory=dict)
    fields: Mapping[str, str | Sequence[str]] = field(default_factory=dict)
    mode: str = "keep"

    def is_empty(self) -> bool:
        return (self.camera is None and self.after is None and self.before is None and not self.attributes
                and not self.fields)


def _as_list(value) -> list:
    return [value] if isinstance(value, (str, int, float)) else list(value)


def check_attribute_names(names: Sequence[str], known: Sequence[str]) -> None:
    """ValueError for the first of ``names`` not in ``known`` (suggesting the name differing in case)."""
    for name in names:
        if name not in known:
            close = [n for n in known if n.lower() == str(name).lower()]
            hint = f" (did you mean {close[0]}?)" if close else f"; known: {', '.join(known)}"
            raise ValueError(f"filter: unknown attribute {name!r}{hint}")


def attribute_violations(probabilities: np.ndarray, names: Sequence[str], attributes: Mapping[str, bool | float]
                         ) -> np.ndarray:
    """Per row, how many of ``attributes``' conditions its probabilities (n x A, columns ``names``)
    break (docs/METHODS.md#attribute-filtering)."""
    probabilities = np.asarray(probabilities)
    out = np.zeros(len(probabilities), int)
    check_attribute_names(list(attributes), list(names))
    for name, want in attributes.items():
        p = probabilities[:, list(names).index(name)]
        if isinstance(want, (bool, np.bool_)):
            out += (p >= 0.5) != bool(want)
        else:
            out += p < float(want)
    return out


def _text_spec(text: str, field_names: Sequence[str], attribute_names: Sequence[str] | None, source: str) -> dict:
    """``"personalMale=yes,carryingBackpack=no,site=north"`` -> the dict form: names of
    string fields take a value, every other name is an attribute taking yes or no."""
    attributes: dict[str, bool] = {}
    fields: dict[str, str] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if "=" not in item:
            raise ValueError(f"filter item {item!r}: expected name=yes or name=no")
        name, value = (s.strip() for s in item.split("=", 1))
        if name in field_names:
            if name in fields:
                raise ValueError(f"filter: {name!r} is named twice")
            fields[name] = value
            continue
        if attribute_names is not None:
            try:
                check_attribute_names([name], list(attribute_names))
            except ValueError as exc:
                hint = f" (or a field of this {source}: {', '.join(field_names) or 'none'})" if field_names else ""
                raise ValueError(f"{exc}{hint}") from None
        if value.lower() not in _YES + _NO:
            raise ValueError(f"filter item {item!r}: value must be yes or no")
        if name in attributes:
            raise ValueError(f"filter: attribute {name!r} is named twice")
        attributes[name] = value.lower() in _YES
    return {"attributes": attributes, "fields": fields}


def _shown(value) -> str:
    """``value`` in a message: its repr when short, else its type (a request's value may be huge)."""
    text = repr(value)
    return text if len(text) <= 40 else type(value).__name__


def _scalars(value, what: str, each: str) -> None:
    """A camera or a field's value(s): strings or integers, at most MAX_TEXT characters, MAX_VALUES values."""
    values = value if isinstance(value, (list, tuple)) else [value]
    if len(values) > MAX_VALUES:
        raise ValueError(f"{what}: at most {MAX_VALUES} values")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (str, int)):
            raise ValueError(f"{what}: {each}, not {type(v).__name__}")
        if isinstance(v, str) and len(v) > MAX_TEXT:
            raise ValueError(f"{what}: at most {MAX_TEXT} characters per value")
        if isinstance(v, int) and abs(v) > 2**63:
            raise ValueError(f"{what}: integer too large")


def _camera(value):
    if value is None or value in ([], ""):
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, list, tuple)):
        raise ValueError(f"filter 'camera' must be a camera or a list of cameras, not {type(value).__name__}")
    _scalars(value, "filter 'camera'", "each camera must be a string or a number")
    return value


def _in_range(name: str, seconds) -> None:
    if not (isinstance(seconds, int) or math.isfinite(seconds)) or abs(seconds) > MAX_SECONDS:
        raise ValueError(f"filter {name!r}: a number of seconds within +-{MAX_SECONDS:.0e}")


def _time(name: str, value, parse: bool = True):
    """A time condition: its type and limits, and with ``parse`` its reading (``parse_time``)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float, datetime)):
        raise ValueError(f"filter {name!r} must be a time (ISO 8601 or seconds), not {type(value).__name__}")
    if isinstance(value, str) and len(value) > MAX_TEXT:
        raise ValueError(f"filter {name!r}: at most {MAX_TEXT} characters")
    if isinstance(value, (int, float)):
        _in_range(name, value)
    if parse:
        from xreid.index.metadata import parse_time

        try:
            seconds = parse_time(value)
        except ValueError as exc:
            raise ValueError(f"filter {name!r}: {exc}") from None
        _in_range(name, seconds)  # a number written as text meets the same limit
    return value


def _object(value, key: str, shape: str) -> Mapping:
    """The object under ``key`` ({} for None): a mapping of at most MAX_VALUES names of at most
    MAX_TEXT characters; ``shape`` says what it maps in messages."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"filter {key!r} must be an object {shape}, not {type(value).__name__}")
    if len(value) > MAX_VALUES:
        raise ValueError(f"filter {key!r}: at most {MAX_VALUES} names")
    for name in value:
        if not isinstance(name, str) or len(name) > MAX_TEXT:
            raise ValueError(f"filter {key!r}: each name must be a string of at most {MAX_TEXT} characters")
    return value


def _attributes(value, attribute_names: Sequence[str] | None) -> dict:
    value = _object(value, "attributes", "{name: true | false | probability}")
    for name, want in value.items():
        number = isinstance(want, (int, float)) and not isinstance(want, bool)
        if not (isinstance(want, (bool, np.bool_)) or (number and 0 <= want <= 1 and math.isfinite(want))):
            raise ValueError(f"filter attribute {name!r}: give true, false or a probability in [0, 1] "
                             f"(got {_shown(want)})")
    if attribute_names is not None:
        check_attribute_names(list(value), list(attribute_names))
    return dict(value)


def _fields(value, field_names: Sequence[str] | None) -> dict:
    value = _object(value, "fields", "{column: value or [values]}")
    out = {}
    for name, v in value.items():
        if v in ("", [], None):
            continue
        _scalars(v, f"filter field {name!r}", "give a value or a list of values (strings or integers)")
        if field_names is not None and name not in field_names:
            raise ValueError(f"filter: unknown field {name!r}; this gallery has: {', '.join(field_names) or 'none'}")
        out[name] = v
    return out


def _mode(value) -> str:
    mode = value or "keep"
    if mode not in MODES:
        raise ValueError(f"filter mode must be 'rerank' or 'keep', not {_shown(mode)}")
    return mode


def check_filter_value(key: str, value) -> None:
    """The checks of one key of a filter's JSON object that need no gallery: its type and the limits
    (MAX_TEXT characters, MAX_VALUES values, times within MAX_SECONDS of 1970). ``parse_filter``
    runs the same checks; the server runs these on a request before anything else (a 422), and
    ``parse_filter`` then checks the names against the gallery and reads the times. A ValueError
    names the key at fault."""
    checks = {"camera": _camera, "after": lambda v: _time("after", v, parse=False),
              "before": lambda v: _time("before", v, parse=False), "attributes": lambda v: _attributes(v, None),
              "fields": lambda v: _fields(v, None), "mode": _mode}
    if key not in checks:
        raise ValueError(f"unknown filter key: {_shown(key)} (known: {', '.join(KEYS)})")
    checks[key](value)


def parse_filter(spec: str | Mapping | Filter | None, attribute_names: Sequence[str] | None = None,
                 field_names: Sequence[str] | None = None, mode: str | None = None, source: str = "gallery"
                 ) -> Filter:
    """The one filter parser. ``spec``: the command line's text (``"personalMale=yes,site=north"``:
    names of string fields take a value, other names are attributes taking yes or no), a search
    request's JSON object (``{"attributes": {...}, "camera": ..., "after": ..., "before": ...,
    "fields": {...}, "mode": ...}``), a ``Filter`` (checked again) or None. ``attribute_names`` /
    ``field_names``, when given, are the names the gallery knows (others are errors). ``mode``
    overrides the spec's; ``source`` names what holds the fields in messages ("gallery", "index").
    Every mistake is a ValueError naming the key or the item at fault."""
    if isinstance(spec, Filter):
        spec = {"attributes": dict(spec.attributes), "camera": spec.camera, "after": spec.after,
                "before": spec.before, "fields": dict(spec.fields), "mode": spec.mode}
    elif isinstance(spec, str):
        spec = _text_spec(spec, field_names or (), attribute_names, source)
    elif spec is None:
        spec = {}
    elif not isinstance(spec, Mapping):
        raise ValueError(f"a filter must be an object {{attributes, camera, after, before, fields}}, not "
                         f"{type(spec).__name__}")
    unknown = set(spec) - set(KEYS)
    if unknown:
        raise ValueError(f"unknown filter key(s): {', '.join(sorted(map(str, unknown)))} "
                         f"(known: {', '.join(KEYS)})")
    return Filter(camera=_camera(spec.get("camera")), after=_time("after", spec.get("after")),
                  before=_time("before", spec.get("before")),
                  attributes=_attributes(spec.get("attributes"), attribute_names),
                  fields=_fields(spec.get("fields"), field_names), mode=_mode(mode or spec.get("mode")))
