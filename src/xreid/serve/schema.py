"""The shapes of the search API's requests and replies (pydantic), so ``/docs`` and
``/openapi.json`` show them. A search request's filter is checked at the API edge before anything
runs, by the one filter parser's checks (``xreid.index.filters.check_filter_value``), so a
malformed filter is a 422 naming the field, never a search that runs and then fails unaudited;
what the values mean is ``xreid.index.filters.Filter``'s. Replies allow keys beyond those named (a
row's own string fields); everything named is always present."""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from xreid.index.filters import check_filter_value


class SearchFilters(BaseModel):
    """``{"attributes": {"carryingBackpack": true, "upperBodyRed": 0.7}, "camera": ["3"],
    "after": "2024-05-01T14:00", "before": 1714572000, "fields": {"column": "value" | [values]}}``."""

    model_config = ConfigDict(extra="allow")  # unknown keys and names are the search's to name (400)

    attributes: Any = None
    camera: Any = None
    after: Any = None
    before: Any = None
    fields: Any = None

    @field_validator("attributes", "camera", "after", "before", "fields")
    @classmethod
    def _checked(cls, value, info):
        check_filter_value(info.field_name, value)  # its ValueError is a validation error: a 422 in words
        return value

    def as_dict(self) -> dict:
        """The filter as the session takes it (keys not given left out; unknown keys kept, to be named)."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


def validation_message(errors: list[dict]) -> str:
    """A request validation error in words, without the offending input: ``k: Input should be a
    finite number; filters.camera: filter 'camera' must be a camera or a list of cameras, not dict``."""
    parts = []
    for e in errors[:5]:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "request"
        msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        if e.get("type") in ("json_invalid", "model_attributes_type", "dict_type") and loc in ("request", "0"):
            msg = "the body must be a JSON object (Content-Type: application/json)"
            loc = "request"
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
    camera: Optional[str] = Field(None, max_length=200,
                                  description="the camera the uploaded images come from, one of GET /api/info's "
                                                    "query_cameras (the model's per-camera statistics or means): "
                                                    "they are embedded as that camera's crops; none: as a crop of "
                                                    "unknown camera")


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
    query_cameras: list[str] = Field(default_factory=list, description="cameras the model embeds crops of in their "
                                                                       "own way (per-camera statistics or means): a "
                                                                       "search may name one for its uploads")
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
    camera: Optional[str] = Field(None, description="the camera the uploads were embedded as")
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
