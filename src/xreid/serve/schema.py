"""The shapes of the search API's requests and replies (pydantic), so ``/docs`` and
``/openapi.json`` show them, and the types a search request's filter may have, checked at the API
edge before anything runs (so a malformed filter is a 422 naming the field, never a search that
runs and then fails unaudited). What the filter values mean is ``xreid.serve.case.parse_filters``'
and ``xreid.index.gallery.Filter``'s. Replies allow keys beyond those named (a row's own string
fields); everything named is always present."""

from __future__ import annotations

import math
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

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


# -- requests --


class SearchRequest(BaseModel):
    uploads: list[str] = Field(default_factory=list, description="ids of uploaded query images (POST /api/uploads)")
    items: list[int] = Field(default_factory=list, description="gallery item ids used as query images "
                                                                 "(e.g. confirmed matches); left out of the results")
    k: int = Field(20, description="how many results")
    filters: SearchFilters = Field(default_factory=SearchFilters, description=(
        '{"attributes": {"carryingBackpack": true, "personalMale": false, "upperBodyRed": 0.7}, '
        '"camera": ["3"], "after": "2024-05-01T14:00", "before": "...", "fields": {"column": "value"}}'))
    threshold: Optional[float] = Field(None, description="open-set threshold: results whose same-person "
                                                         "probability is below it are flagged")
    description: Optional[str] = Field(None, description="a description in words, e.g. 'woman, red top, backpack, "
                                                           "no hat': alone (no uploads or items) it ranks the case by "
                                                           "how well each image fits; with a query image it re-ranks "
                                                           "the image search")


class BoxRequest(BaseModel):
    box: list[float] = Field(..., description="x0, y0, x1, y1 in the pixels of the sighting's frame")


class MarkRequest(BaseModel):
    search: str
    item: int
    mark: Optional[str] = Field(None, description="'match', 'not_match' or null to clear")


# -- replies --


class ErrorReply(BaseModel):
    detail: str = Field(description="what is wrong, naming the item, upload, search or field")


class Reply(BaseModel):
    """A reply: the fields named are always there; fields a newer part of the service adds pass through."""

    model_config = ConfigDict(extra="allow")


class AttributeInfo(Reply):
    name: str
    text: str = Field(description="the attribute in words")
    group: str
    reliable: bool = Field(description="the head's validation quality is high enough to show it without a caveat")
    count: int = Field(description="gallery rows with calibrated probability >= 0.5")
    phrase: Optional[str] = Field(None, description="the words a description uses for it")
    absent_phrase: Optional[str] = Field(None, description="the words a description uses for its absence")


class ValueCount(Reply):
    value: str
    count: int


class FieldFacet(Reply):
    name: str
    values: list[ValueCount]


class TimeRange(Reply):
    first: Optional[str] = None
    last: Optional[str] = None
    known: int = Field(description="rows with a time")


class LimitsInfo(Reply):
    max_upload_bytes: int
    max_pixels: int
    max_k: int
    formats: list[str]


class InfoReply(Reply):
    case: str
    count: int = Field(description="gallery rows")
    model: Optional[str] = None
    attributes: list[AttributeInfo]
    cameras: list[ValueCount]
    time: TimeRange
    fields: list[FieldFacet]
    calibration: Optional[dict] = Field(None, description="the distance -> same-person probability calibration")
    threshold: float
    limits: LimitsInfo


class Chip(Reply):
    text: str
    group: str
    probability: float
    reliable: bool
    flagged: str = Field(description="why to be careful (e.g. two colours likely for one part); empty when none")


class QueryCheckReply(Reply):
    usable: bool
    problems: list[str]


class UploadReply(Reply):
    id: str = Field(description="the first 20 hex digits of the image's SHA-256")
    name: str
    image: str = Field(description="where the uploaded image is served")
    chips: list[Chip] = Field(description="what the model sees in the image")
    check: QueryCheckReply


class Score(Reply):
    name: str
    text: str
    score: float


class Share(Reply):
    label: str
    share: float
    colour: str


class SearchResult(Reply):
    """One result. An image search gives distance, probability, line, scores and composition; a
    search by description gives score, evidence and reason (and an image search with a description
    both)."""


    id: int
    rank: int
    key: str = Field(description="the image's path under the data root, as indexed")
    thumbnail: str
    mark: Optional[str] = None
    time: Optional[str] = None
    distance: Optional[float] = None
    probability: Optional[float] = Field(None, description="calibrated same-person probability")
    flagged: Optional[bool] = Field(None, description="probability below the threshold")
    identical: Optional[bool] = Field(None, description="a copy of the query picture")
    line: Optional[str] = Field(None, description="the result in one sentence")
    scores: Optional[list[Score]] = None
    composition: Optional[list[Share]] = None
    explained_share: Optional[float] = None
    score: Optional[float] = Field(None, description="how well the image fits the description")
    evidence: Optional[list[dict]] = Field(None, description="per described attribute: probability and weight")
    reason: Optional[str] = Field(None, description="why the image fits the description, in words")


class SearchQuery(Reply):

    uploads: list[str]
    items: list[int]
    chips: list[Chip]
    description: Optional[Any] = Field(None, description="the description searched with, or the query image's "
                                                         "own description")


class SearchReply(Reply):

    search: str = Field(description="the search's id (for explanations, marks and reports)")
    kind: Optional[str] = Field(None, description="'image' or 'description'")
    query: SearchQuery
    description: Optional[dict] = Field(None, description="the description as read: its terms and problems")
    joined: Optional[str] = Field(None, description="how a description joined an image search")
    rule: Optional[str] = None
    method: str
    candidates: int
    threshold: float
    calibrated: bool
    results: list[SearchResult]


class ItemReply(Reply):

    id: int
    path: str
    time: Optional[str] = None
    camera: Optional[str] = None
    pid: Optional[str] = None
    attributes: dict[str, float] = Field(description="calibrated attribute probabilities")


class MarkReply(Reply):
    search: str
    item: int
    mark: Optional[str] = None
    confirmed: list[int] = Field(description="items marked as the person for this query")
