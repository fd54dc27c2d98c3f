"""Draw the embedding analyses (docs/METHODS.md#embedding-analysis): CSV + bar chart of the embedding
dims per attribute, one montage per dim rank list, an index page (``analysis.html.j2``)."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict
from pathlib import Path

from xreid.explain.embedding_analysis import DimRankList, DimsTableRow
from xreid.io import atomic_write, write_json
from xreid.rendering.templating import render


def _save_figure(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write(path, lambda fh: fh.write(buf.getvalue()))


def write_analysis(out: Path, table: list[DimsTableRow], rank_lists: list[DimRankList],
                   image_paths: dict[str, Path], model: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from xreid.data.images import ImageError, load_image

    out.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["attribute", "embedding_dims_top1", "positive_ratio"])
    for r in table:
        writer.writerow([r.attribute, r.dims, f"{r.positive_ratio:.4f}"])
    atomic_write(out / "dims_per_attribute.csv", lambda fh: fh.write(buf.getvalue().encode()))
    write_json(out / "analysis.json", {"model": model, "dims_per_attribute": [asdict(r) for r in table],
                                       "rank_lists": [asdict(r) for r in rank_lists]})

    fig, ax1 = plt.subplots(figsize=(max(8, 0.22 * len(table)), 4))
    x = np.arange(len(table))
    ax1.bar(x, [r.dims for r in table], color="#4e79a7", label="embedding dims (top-1 attribute)")
    ax1.set_ylabel("embedding dims")
    ax2 = ax1.twinx()
    ax2.plot(x, [100 * r.positive_ratio for r in table], "o", color="#e15759", label="positive ratio (%)")
    ax2.set_ylabel("positive ratio in training data (%)")
    ax1.set_xticks(x, [r.attribute for r in table], rotation=90, fontsize=7)
    ax1.set_title("Embedding dims per attribute (argmax of the attribute-layer weights)")
    fig.legend(loc="upper right")
    _save_figure(fig, out / "dims_per_attribute.png")
    plt.close(fig)

    for rl in rank_lists:
        fig, axes = plt.subplots(1, len(rl.keys), figsize=(1.1 * len(rl.keys), 2.6))
        for ax, key, val in zip(np.atleast_1d(axes), rl.keys, rl.values):
            try:
                ax.imshow(load_image(image_paths[key]))
            except (ImageError, KeyError):
                pass
            ax.set_title(f"{val:.3f}", fontsize=7)
            ax.axis("off")
        fig.suptitle(f"dim {rl.dim}: + " + ", ".join(n for n, _ in rl.top_attributes)
                     + " | - " + ", ".join(n for n, _ in rl.bottom_attributes), fontsize=8)
        _save_figure(fig, out / f"dim_{rl.dim}.png")
        plt.close(fig)
    page = render("analysis.html.j2", model=model, table=table, rank_lists=rank_lists)
    atomic_write(out / "index.html", lambda fh: fh.write(page.encode()))
    return out / "index.html"
