"""Render a ranking explanation (``RankingExplanation``) as one self-contained HTML page: images
inlined as base64, pie charts as inline SVG, no network access needed. The markup is in the
templates ``report.html.j2`` (the page) and ``card.html.j2`` (one result's explanation card); here
the records become the values those templates show.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
from PIL import Image

from xreid.data.vocabulary import group_order, words
from xreid.explain.maps.base import QUERY
from xreid.explain.ranking import RankingExplanation, ResultExplanation
from xreid.rendering.charts import bar_svg, composition, pie_svg
from xreid.rendering.interpretation import interpreter_block
from xreid.rendering.maps import HIGH_MEANS, MapPicture, caption, data_uri
from xreid.rendering.templating import render
from xreid.rendering.words import explained_sentence, query_chips, result_line


def image_data_uri(path: str | Path | np.ndarray | None, height: int = 128) -> str:
    """A JPEG thumbnail of ``path`` (an image file, or an image already decoded: H x W x 3 RGB) as a
    data: URI (a grey placeholder when it cannot be read)."""
    from xreid.data.images import ImageError, load_image

    if isinstance(path, np.ndarray):
        arr = path
    else:
        try:
            arr = load_image(path) if path else None
        except ImageError:
            arr = None
    if arr is None:
        arr = np.full((height, height // 2, 3), 200, np.uint8)
    im = Image.fromarray(arr)
    im = im.resize((max(1, round(im.width * height / im.height)), height), Image.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=88)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()



def maps_view(pictures: list[MapPicture]) -> dict:
    """What ``maps.html.j2`` draws: each picture with its caption, and the colour scale's legend."""
    kinds = list(dict.fromkeys(p.saliency.kind for p in pictures))
    return {"cells": [{"uri": data_uri(p.jpeg),
                       "text": caption(p.saliency) + (" (map is all zero)" if p.saliency.is_empty else "")}
                      for p in pictures],
            "legend": "; ".join(HIGH_MEANS.get(k, "more") for k in kinds)}


def _chip_groups(e: RankingExplanation) -> list[tuple[str, list[dict]]]:
    chips = query_chips(e.attribute_names, e.query_calibrated or e.query_probabilities,
                        e.attribute_reliable or [True] * len(e.attribute_names))
    groups: dict[str, list[dict]] = {}
    for c in chips:
        tip = f"{100 * c.probability:.0f} %" + ("" if c.reliable else ", unreliable for this model") + \
            (f"; {c.flagged}" if c.flagged else "")
        groups.setdefault(c.group, []).append({
            "cls": "chip" + ("" if c.reliable else " unreliable") + (" flag" if c.flagged else ""),
            "tip": tip, "text": c.text, "flagged": bool(c.flagged)})
    return sorted(groups.items(), key=lambda kv: group_order(kv[0]))


def _detail_rows(e: RankingExplanation, r: ResultExplanation) -> list[dict]:
    """Every attribute of one result, largest share of the distance first."""
    names = e.attribute_names
    cal_q = e.query_calibrated or e.query_probabilities
    cal_g = r.calibrated or r.probabilities
    rel = e.attribute_reliability or [None] * len(names)
    ok = e.attribute_reliable or [True] * len(names)
    rows = []
    for a in sorted(range(len(names)), key=lambda a: -r.exact_parts[a]):
        n = names[a]
        score = r.matching_scores.get(n)
        p_diff = cal_q[a] * (1 - cal_g[a]) + (1 - cal_q[a]) * cal_g[a]
        rows.append({"cls": "" if ok[a] else "unreliable", "text": words(n).present, "name": n,
                     "query": f"{100 * cal_q[a]:.0f}", "result": f"{100 * cal_g[a]:.0f}", "differ": f"{100 * p_diff:.0f}",
                     "share": f"{100 * r.exact_parts[a] / max(r.distance, 1e-12):.1f}",
                     "error": f"{r.attribute_error_eq32[a]:+.3f}", "score": "" if score is None else f"{100 * score:.0f}",
                     "reliability": "" if rel[a] is None else f"{100 * rel[a]:.0f}",
                     "raw": f"{100 * e.query_probabilities[a]:.0f} / {100 * r.probabilities[a]:.0f}"})
    return rows


def _fused_line(r: ResultExplanation, top: int = 4) -> str:
    """With a fusion: the ranking distance as the model's part plus the attributes' parts, the
    largest named (docs/METHODS.md#attribute-fusion)."""
    if r.fused is None:
        return ""
    parts = sorted(r.fused.attributes.items(), key=lambda kv: -kv[1])
    named = ", ".join(f"{words(n).present} {v:.4f}" for n, v in parts[:top])
    more = f", {len(parts) - top} more" if len(parts) > top else ""
    return (f"fused distance {r.distance:.3f} = model {r.fused.model:.3f} + attributes "
            f"{sum(r.fused.attributes.values()):.4f}" + (f" ({named}{more})" if named else ""))


def crops_view(r: ResultExplanation, strip: list[np.ndarray] | None) -> dict | None:
    """What the card shows of a pair read through its crops (``r.crops``): one line, and the result's
    crops with each one's distance to the query picture, the one shown marked."""
    c = r.crops
    if c is None:
        return None
    d = np.asarray(c.distances)
    qi, rj = c.shown
    side = f"{len(c.query)} crops of the query x " if len(c.query) > 1 else ""
    line = (f"Read through the best crops: {side}{len(c.result)} of this result, crop distances "
            f"{d.min():.3f}-{d.max():.3f} (median {np.median(d):.3f}). Shown: "
            + (f"query {c.query[qi]} with " if len(c.query) > 1 else "")
            + f"{c.result[rj]} ({c.shown_distance:.3f}), the pair nearest the ranking's distance {c.distance:.3f}."
            + (f" Unreadable: {'; '.join(c.skipped)}." if c.skipped else ""))
    cells = [{"uri": image_data_uri(im, 72), "text": f"{name} · {d[qi, j]:.3f}", "shown": j == rj}
             for j, (name, im) in enumerate(zip(c.result, strip or []))]
    return {"line": line, "cells": cells}


def result_card(e: RankingExplanation, r: ResultExplanation, picture, maps: list[MapPicture],
                interpreted=None, strip: list[np.ndarray] | None = None) -> dict:
    """What ``card.html.j2`` draws for result ``r``; ``picture``: its image file or decoded image;
    ``strip``: a sighting's crops (small), shown with ``r.crops``."""
    names = e.attribute_names
    cls = "" if r.is_match is None else ("match" if r.is_match else "nomatch")
    label, label_cls = "", cls
    if r.identical_to_query:
        label, label_cls = "identical to the query image", "same"
    elif r.is_match is not None:
        label = "same person (known)" if r.is_match else "different person (known)"
    slices = composition(r.exact_parts, r.exact_residual, names)
    model_distance = r.fused.model if r.fused is not None else r.distance  # what the exact parts split
    own = [p for p in maps if p.saliency.image == r.key or p.saliency.pair == r.key]
    first = ("pair-sum", "occlusion-pair")  # shown on the card; the rest fold away in the details
    return {
        "cls": cls, "picture": image_data_uri(picture, 160), "rank": r.rank, "distance": f"{r.distance:.3f}",
        "label": label, "label_cls": label_cls, "key": r.key,
        "moved": f" · was rank {r.original_rank} before filtering" if r.original_rank != r.rank else "",
        "violations": f" · breaks {r.filter_violations} filter condition(s)" if r.filter_violations else "",
        "line": (result_line(r.summary, names, e.query_calibrated, r.calibrated) if r.summary is not None
                 else "No attribute summary for this result."),
        "fused": _fused_line(r), "bar": bar_svg(slices), "explained": f"{100 * r.explained_share:.0f}",
        "summary_maps": maps_view([p for p in own if p.saliency.kind in first]),
        "detail_maps": maps_view([p for p in own if p.saliency.kind not in first and p.saliency.kind != "interpreter"]),
        # the distilled interpreter's parts and maps (xreid explain --interpreter)
        "interpreter": "" if interpreted is None else interpreter_block(
            interpreted, [p for p in own if p.saliency.kind == "interpreter"]),
        "pie": pie_svg([v for _, v, _ in slices], [c for _, _, c in slices]),
        "legend": [{"label": lbl, "share": f"{100 * v / max(model_distance, 1e-12):.0f}", "colour": c}
                   for lbl, v, c in slices],
        "rows": _detail_rows(e, r), "crops": crops_view(r, strip)}


def render_report(e: RankingExplanation, query_path: str | Path | np.ndarray,
                  gallery_paths: dict[str, str | Path | np.ndarray | None],
                  maps: list[MapPicture] | None = None, skipped: list[str] | None = None,
                  notes: list[str] | None = None, interpretation=None,
                  strips: dict[str, list[np.ndarray]] | None = None) -> str:
    """The HTML page for one explained ranking: a query card, then one card per result with its
    plain-words line; every number folds open underneath. The query and the results' pictures are
    image files or images already decoded (H x W x 3 RGB). ``skipped`` lists the files that could not
    be used, ``notes`` any other remark the reader must see. One self-contained offline file."""
    maps = maps or []
    interpreted = {p.key: p for p in interpretation.pairs} if interpretation is not None else {}
    strips = strips or {}
    cards = [result_card(e, r, gallery_paths.get(r.key), maps, interpreted.get(r.key), strips.get(r.key))
             for r in e.results]
    return str(render(
        "report.html.j2", e=e, query_picture=image_data_uri(query_path, 192), chip_groups=_chip_groups(e),
        unreliable=[words(n).present for n, ok in zip(e.attribute_names, e.attribute_reliable) if not ok],
        filter_words=[words(k).present if v else words(k).absent for k, v in e.filter.items()],
        notes=notes or [], query_maps=maps_view([p for p in maps if p.saliency.image == QUERY and p.saliency.pair is None]),
        explained=explained_sentence([r.explained_share for r in e.results]), cards=cards, skipped=skipped or []))
