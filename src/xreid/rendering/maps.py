"""Draw saliency maps: a heat-map overlay on the image, as JPEG bytes (small enough to inline many
in one report); the report's legend says what high means for each kind of map."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import numpy as np

from xreid.explain.maps.base import QUERY, SaliencyMap


@dataclass
class MapPicture:
    """A saliency map drawn over its image (JPEG bytes)."""

    saliency: SaliencyMap
    jpeg: bytes


def draw_maps(maps: list[SaliencyMap], images: dict[str, np.ndarray]) -> list[MapPicture]:
    """Every map drawn over its image (``images`` keyed by ``QUERY`` or the gallery key)."""
    return [MapPicture(m, overlay_jpeg(images[m.image], m)) for m in maps]


#: What a high value means, per kind of map (the colour bar says it).
HIGH_MEANS = {
    "pair-sum": "drives the match", "pair": "drives this dimension", "attention": "the model looks here",
    "attribute": "shows the attribute", "occlusion-pair": "hiding it lowers the similarity",
    "occlusion-attribute": "hiding it lowers the attribute", "interpreter": "the interpreter attends here",
}


def caption(saliency: SaliencyMap) -> str:
    """What a map shows, in words: "query: regions that make these two look alike", "attribute: backpack"."""
    from xreid.data.vocabulary import words

    side = "query: " if saliency.image == QUERY and saliency.pair else ""
    if saliency.kind in ("attribute", "occlusion-attribute"):
        return f"{side}where the model sees: {words(saliency.label).present}"
    if saliency.kind == "pair":
        return f"{side}pair {saliency.label}"
    return f"{side}{saliency.label}"


def overlay_jpeg(image: np.ndarray, saliency: SaliencyMap, scale: float = 1.5, quality: int = 85) -> bytes:
    """The image with the map overlaid (jet colours, half transparent), ``scale`` x the map size, as
    JPEG bytes. An all-zero map is not drawn as noise: the image is shown greyed with a white band
    (the report's caption says "map is all zero"). What high means is said in the report's legend."""
    from matplotlib import colormaps
    from PIL import Image

    h, w = saliency.values.shape
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    img = np.asarray(Image.fromarray(np.asarray(image, np.uint8)).resize((w, h), Image.BILINEAR), np.float64)
    if saliency.is_empty:
        out = 0.4 * img + 0.6 * 200
        out[h // 2 - max(1, h // 20): h // 2 + max(1, h // 20)] = 255
    else:
        heat = colormaps["jet"](saliency.values / float(saliency.values.max()))[..., :3] * 255
        out = 0.5 * img + 0.5 * heat
    pic = Image.fromarray(out.clip(0, 255).astype(np.uint8)).resize(size, Image.BILINEAR)
    buf = io.BytesIO()
    pic.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def data_uri(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()
