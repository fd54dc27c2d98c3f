"""The console's lines: what ``xreid`` prints after explaining a ranking or scoring attributes
(the same records the HTML report draws, as plain text)."""

from __future__ import annotations

from xreid.rendering.words import query_chips, result_line


def ranking_lines(e) -> list[str]:
    """One explained ranking (``RankingExplanation``): the query's clear attributes, then per result
    its rank, key, distance, explained share, the fused parts and the one-line summary, then the
    reliability verdict."""
    chips = query_chips(e.attribute_names, e.query_calibrated, e.attribute_reliable)
    lines = [f"query {e.query}: {', '.join(c.text for c in chips if c.reliable) or 'no clear attribute'}"]
    for r in e.results:
        mark = "" if r.is_match is None else (" (same person, known)" if r.is_match else " (different person, known)")
        lines.append(f"  {r.rank:>2}. {r.key}  d={r.distance:.4f}  explained {100 * r.explained_share:.0f} %{mark}")
        if r.fused is not None:
            top = sorted(r.fused.attributes.items(), key=lambda kv: -kv[1])[:3]
            lines.append(f"      fused: model {r.fused.model:.4f} + attributes {sum(r.fused.attributes.values()):.4f}"
                         + (f" ({', '.join(f'{n} {v:.4f}' for n, v in top)})" if top else ""))
        if r.summary is not None:
            lines.append(f"      {result_line(r.summary, e.attribute_names, e.query_calibrated, r.calibrated)}")
    lines.append(e.reliability)
    return lines


def attribute_table(report: dict) -> list[str]:
    """``evaluate_head``'s report as a table: mA, TPR, TNR, accuracy and positives per attribute, then the mean."""
    def pct(v):
        return f"{100 * v:7.1f}" if v is not None else "      -"

    lines = [f"{'attribute':<24}{'mA':>7}{'TPR':>7}{'TNR':>7}{'acc':>7}{'pos':>6}"]
    lines += [f"{name:<24}{pct(r['mA'])}{pct(r['TPR'])}{pct(r['TNR'])}{pct(r['accuracy'])}{r['positives']:6d}"
              for name, r in report["per_attribute"].items()]
    lines.append(f"mA over {report['attributes']} attributes on {report['images']} test images: {report['mA']:.1f} %")
    return lines
