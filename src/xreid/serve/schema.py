"""The types a search request's filter may have, checked at the API edge before anything runs (so a
malformed filter is a 422 naming the field, never a search that runs and then fails unaudited).
What the values mean is ``xreid.serve.case.parse_filters``' and ``xreid.index.gallery.Filter``'s."""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

#: times given as numbers are seconds since 1970: beyond this (year ~5138) they are a mistake
MAX_SECONDS = 1e11
MAX_TEXT = 200


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", bool: "true/false", type(None): "null"}.get(type(value),
                                                                                        type(value).__name__)


def _scalar(value: Any, where: str) -> str | int:
    """A camera or field value: a string or an integer (not true/false, not a float, no nesting)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"{where}: give a string or an integer (got {_kind(value)})")
    if isinstance(value, str) and len(value) > MAX_TEXT:
        raise ValueError(f"{where}: at most {MAX_TEXT} characters")
    if isinstance(value, int) and abs(value) > 2**63:
        raise ValueError(f"{where}: integer too large")
    return value


def _scalars(value: Any, where: str):
    if value is None:
        return None
    if isinstance(value, list):
        if len(value) > 1000:
            raise ValueError(f"{where}: at most 1000 values")
        return [_scalar(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return _scalar(value, where)


class SearchFilters(BaseModel):
    """``{"attributes": {"carryingBackpack": true, "upperBodyRed": 0.7}, "camera": ["3"],
    "after": "2024-05-01T14:00", "before": 1714572000, "fields": {"column": "value" | [values]}}``."""

    model_config = ConfigDict(extra="allow")  # unknown keys are named by parse_filters (400)

    attributes: Any = None
    camera: Any = None
    after: Any = None
    before: Any = None
    fields: Any = None

    @field_validator("attributes")
    @classmethod
    def _attributes(cls, value):
        if value is None:
            return None
        if not isinstance(value, dict):
            raise ValueError(f"attributes: give an object {{name: true | false | probability}} (got {_kind(value)})")
        for name, want in value.items():
            if isinstance(want, bool):
                continue
            if not isinstance(want, (int, float)) or not math.isfinite(want) or not 0 <= want <= 1:
                raise ValueError(f"attributes.{name}: give true, false or a probability in [0, 1] "
                                 f"(got {_kind(want) if not isinstance(want, (int, float)) else want})")
        return value

    @field_validator("camera")
    @classmethod
    def _camera(cls, value):
        return _scalars(value, "camera")

    @field_validator("after", "before")
    @classmethod
    def _time(cls, value, info):
        if value is None or (isinstance(value, str) and len(value) <= MAX_TEXT):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, int) and abs(value) > MAX_SECONDS or not math.isfinite(float(value)) \
                    or abs(value) > MAX_SECONDS:
                raise ValueError(f"{info.field_name}: a number of seconds within +-{MAX_SECONDS:.0e}")
            return value
        raise ValueError(f"{info.field_name}: give an ISO 8601 time or a number of seconds (got {_kind(value)})")

    @field_validator("fields")
    @classmethod
    def _fields(cls, value):
        if value is None:
            return None
        if not isinstance(value, dict):
            raise ValueError(f"fields: give an object {{column: value or [values]}} (got {_kind(value)})")
        return {k: _scalars(v, f"fields.{k}") for k, v in value.items()}

    def as_dict(self) -> dict:
        """The filter as the session takes it (keys not given left out; unknown keys kept, to be named)."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


def validation_message(errors: list[dict]) -> str:
    """A request validation error in words, without the offending input: ``k: Input should be a
    finite number; filters.camera: give a string or an integer (got an object)``."""
    parts = []
    for e in errors[:5]:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "request"
        msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        if e.get("type") in ("json_invalid", "model_attributes_type", "dict_type") and loc in ("request", "0"):
            msg = "the body must be a JSON object (Content-Type: application/json)"
            loc = "request"
        last = loc.rsplit(".", 1)[-1]
        if ":" in msg and msg.split(":", 1)[0].split(".")[0].split("[")[0] == last:  # the message names the field
            parts.append(loc[:len(loc) - len(last)] + msg)
        else:
            parts.append(f"{loc}: {msg}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(dict.fromkeys(parts)) + more
