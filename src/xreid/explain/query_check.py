"""Is the query a usable person crop? (docs/METHODS.md#query-reliability)

A re-id model ranks whatever it is given: a blank frame, sensor noise, a blurred smear or a crop
mostly hidden behind an obstacle all get a confident-looking top 10. Before an analyst reads an
explanation, four image measurements (on the crop resized to 128 x 64, so they do not depend on the
model) say whether the query can be trusted:

- contrast: standard deviation of the grey levels (blank or nearly uniform crops have almost none);
- sharpness: mean absolute Laplacian of the grey image over its contrast (blur lowers it; pixel
  noise raises it far above any photograph);
- uniform rows: the share of image rows with almost no variation (an occluder, a black border or a
  frozen frame covers whole rows).

The limits are the extremes of the PETA-ReID-val queries (210 crops of training identities), widened
by a margin, so that on validation no real query is flagged; benchmarks/bench_query_check.py measures
how often real test queries and synthetic bad ones (solid colour, noise, heavy blur, occlusion, a
crop of background) are flagged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

ANALYSIS_SIZE = (128, 64)
#: Limits chosen on the 210 PETA-ReID-val queries (docs/RESULTS.md#query-check): 0.8 x the lowest
#: and 1.25 x the highest value seen there (contrast 18.2 .. 85.9, sharpness 0.099 .. 0.748,
#: uniform rows 0 .. 0.078).
MIN_CONTRAST = 14.5
MIN_SHARPNESS = 0.079
MAX_SHARPNESS = 0.935
MAX_UNIFORM_ROWS = 0.098


@dataclass
class QueryCheck:
    """The measurements of one query crop and the problems they reveal (empty: usable)."""

    contrast: float
    sharpness: float
    uniform_rows: float
    problems: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return not self.problems


def _laplacian(grey: np.ndarray) -> np.ndarray:
    padded = np.pad(grey, 1, mode="edge")
    return (padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:] - 4 * grey)


def measure(image: np.ndarray) -> tuple[float, float, float]:
    """(contrast, sharpness, uniform rows) of an H x W x 3 uint8 RGB crop."""
    from PIL import Image

    small = np.asarray(Image.fromarray(np.asarray(image, np.uint8)).resize(ANALYSIS_SIZE[::-1], Image.BILINEAR))
    grey = small.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    contrast = float(grey.std())
    sharpness = float(np.abs(_laplacian(grey)).mean() / max(contrast, 1e-6))
    uniform_rows = float((grey.std(axis=1) < 3.0).mean())
    return contrast, sharpness, uniform_rows


def check_query(image: np.ndarray) -> QueryCheck:
    """Measure a query crop and list, in words, why it may not be a usable person crop."""
    contrast, sharpness, uniform = measure(image)
    problems = []
    if contrast < MIN_CONTRAST:
        problems.append("the image is almost uniform (blank frame or solid colour)")
    elif sharpness > MAX_SHARPNESS:
        problems.append("the image looks like noise, not a photograph")
    elif sharpness < MIN_SHARPNESS:
        problems.append("the image is heavily blurred")
    if uniform > MAX_UNIFORM_ROWS and contrast >= MIN_CONTRAST:
        problems.append(f"{100 * uniform:.0f} % of the image rows are uniform (occluded or padded crop)")
    return QueryCheck(contrast, sharpness, uniform, problems)
