"""Draw saliency maps: heat-map overlay on the image with a colour bar, as PNG bytes."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import numpy as np

from xreid.explain.maps.base import QUERY, SaliencyMap


@dataclass
class MapPicture:
    """A saliency map drawn over its image."""

    saliency: SaliencyMap
    png: bytes


def draw_maps(maps: list[SaliencyMap], images: dict[str, np.ndarray]) -> list[MapPicture]:
    """Every map drawn over its image (``images`` keyed by ``QUERY`` or the gallery key)."""
    return [MapPicture(m, overlay_png(images[m.image], m)) for m in maps]


def caption(saliency: SaliencyMap) -> str:
    """What a map shows, in the words the report uses ("query: pair dim 17", "attention ...")."""
    return f"{'query: ' if saliency.image == QUERY and saliency.pair else ''}{saliency.kind} {saliency.label}"


def overlay_png(image: np.ndarray, saliency: SaliencyMap, height: int = 192) -> bytes:
    """The image with the map overlaid (jet, alpha 0.5) and a colour bar; an all-zero map is not
    drawn as noise: the image is shown greyed with the words 'map is all zero'."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    h, w = saliency.values.shape
    img = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))
    aspect = w / h
    fig = plt.figure(figsize=(1.9 * aspect + 0.9, 1.9 + 0.35), dpi=height / 2.25)
    ax = fig.add_axes([0.02, 0.02, 0.68, 0.84])
    ax.axis("off")
    ax.set_title(saliency.label, fontsize=7)
    if saliency.is_empty:
        ax.imshow((0.4 * img + 0.6 * 200).astype(np.uint8))
        ax.text(w / 2, h / 2, "map is\nall zero", ha="center", va="center", fontsize=7)
    else:
        vmax = float(saliency.values.max())
        ax.imshow(img)
        im = ax.imshow(saliency.values, cmap="jet", alpha=0.5, vmin=0.0, vmax=vmax)
        cax = fig.add_axes([0.74, 0.1, 0.06, 0.7])
        bar = fig.colorbar(im, cax=cax, ticks=[0, vmax])
        bar.ax.set_yticklabels(["0", "max"], fontsize=6)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()
