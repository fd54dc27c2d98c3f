"""The shapes of the search API's requests and replies (pydantic), so ``/docs`` and
``/openapi.json`` show them. Replies whose columns depend on the gallery (a row's string fields)
allow extra keys; everything named here is always present.
"""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict, Field

# -- requests --


class SearchRequest(BaseModel):
    uploads: list[str] = Field(default_factory=list, description="ids of uploaded query images (POST /api/uploads)")
    items: list[int] = Field(default_factory=list, description="gallery item ids used as query images "
                                                                 "(e.g. confirmed matches); left out of the results")
    k: int = Field(20, description="how many results")
    filters: dict = Field(default_factory=dict, description=(
        '{"attributes": {"carryingBackpack": true, "personalMale": false, "upperBodyRed": 0.7}, '
        '"camera": ["3"], "after": "2024-05-01T14:00", "before": "...", "fields": {"column": "value"}}'))
    threshold: Optional[float] = Field(None, description="open-set threshold: results whose same-person "
                                                         "probability is below it are flagged")


class MarkRequest(BaseModel):
    search: str
    item: int
    mark: Optional[str] = Field(None, description="'match', 'not_match' or null to clear")


# -- replies --


class ErrorReply(BaseModel):
    detail: str = Field(description="what is wrong, naming the item, upload, search or field")


class AttributeInfo(BaseModel):
    name: str
    text: str = Field(description="the attribute in words")
    group: str
    reliable: bool = Field(description="the head's validation quality is high enough to show it without a caveat")
    count: int = Field(description="gallery rows with calibrated probability >= 0.5")


class ValueCount(BaseModel):
    value: str
    count: int


class FieldFacet(BaseModel):
    name: str
    values: list[ValueCount]


class TimeRange(BaseModel):
    first: Optional[str] = None
    last: Optional[str] = None
    known: int = Field(description="rows with a time")


class LimitsInfo(BaseModel):
    max_upload_bytes: int
    max_pixels: int
    max_k: int
    formats: list[str]


class InfoReply(BaseModel):
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


class Chip(BaseModel):
    text: str
    group: str
    probability: float
    reliable: bool
    flagged: str = Field(description="why to be careful (e.g. two colours likely for one part); empty when none")


class QueryCheckReply(BaseModel):
    usable: bool
    problems: list[str]


class UploadReply(BaseModel):
    id: str = Field(description="the first 20 hex digits of the image's SHA-256")
    name: str
    image: str = Field(description="where the uploaded image is served")
    chips: list[Chip] = Field(description="what the model sees in the image")
    check: QueryCheckReply


class Score(BaseModel):
    name: str
    text: str
    score: float


class Share(BaseModel):
    label: str
    share: float
    colour: str


class SearchResult(BaseModel):
    model_config = ConfigDict(extra="allow")  # the gallery's own string fields

    id: int
    rank: int
    key: str = Field(description="the image's path under the data root, as indexed")
    distance: float
    probability: Optional[float] = Field(None, description="calibrated same-person probability")
    flagged: Optional[bool] = Field(None, description="probability below the threshold")
    identical: bool = Field(description="a copy of the query picture")
    time: Optional[str] = None
    thumbnail: str
    line: str = Field(description="the result in one sentence")
    scores: list[Score]
    composition: list[Share]
    explained_share: float
    mark: Optional[str] = None


class SearchQuery(BaseModel):
    uploads: list[str]
    items: list[int]
    chips: list[Chip]


class SearchReply(BaseModel):
    search: str = Field(description="the search's id (for explanations, marks and reports)")
    query: SearchQuery
    method: str
    candidates: int
    threshold: float
    calibrated: bool
    results: list[SearchResult]


class ItemReply(BaseModel):
    model_config = ConfigDict(extra="allow")  # the gallery's own string fields

    id: int
    path: str
    time: Optional[str] = None
    camera: Optional[str] = None
    pid: Optional[str] = None
    attributes: dict[str, float] = Field(description="calibrated attribute probabilities")


class MarkReply(BaseModel):
    search: str
    item: int
    mark: Optional[str] = None
    confirmed: list[int] = Field(description="items marked as the person for this query")
