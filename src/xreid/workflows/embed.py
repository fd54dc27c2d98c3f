"""``xreid embed``: a folder or a list of images to an ``.npz`` of embeddings, resumable."""

from __future__ import annotations

from pathlib import Path

from xreid.index.features import EmbedReport, embed_to_file
from xreid.models.embedders import Embedder


def embed_images(embedder: Embedder, root: Path, out: Path, images: Path | None = None,
                 list_file: Path | None = None, resume: bool = True, batch_size: int = 64) -> EmbedReport:
    """Embed a folder (searched recursively) or a list file's images; keys are paths relative to
    ``root``. Entries the folder walk could not follow are reported with the unreadable images."""
    from xreid.data.folder import load_folder, load_list
    from xreid.data.peta import LoadReport

    found = LoadReport()
    if images is not None:
        folder = images if images.is_absolute() or images.is_dir() else root / images
        records = load_folder(folder, root=root, report=found)
    elif list_file is not None:
        records = load_list(list_file, found)
    else:
        raise ValueError("give a folder of images or a list file")
    report = embed_to_file(embedder, root, [r.path for r in records], out, resume=resume, batch_size=batch_size)
    report.skipped = list(found.problems) + report.skipped
    return report
