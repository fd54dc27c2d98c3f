"""``xreid index calibrate``: fit the same-person probability of an index's model on a protocol's
training split and store it with the index (``CASE/match_calibration.json``); and the loader a
search server calls (``load_match_calibration``). The formula and its fitting are in
``xreid.explain.match_probability`` (docs/METHODS.md#same-person-probability).

The training crops are embedded with the index's model set-up into ``CASE/match_calibration.train.npz``
(resumable: an interrupted run keeps ``...train.partial.npz`` and the same command continues),
which is removed once the calibration is written.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from xreid.binding import MODEL_FIELDS, check_binding, differences
from xreid.data.protocol import load_protocol
from xreid.explain.match_probability import CONTEXT, THRESHOLD, MatchCalibration, fit_match_calibration
from xreid.index.features import embed_to_file, load_features_with_identity
from xreid.index.gallery import read_manifest
from xreid.models.embedders import Embedder
from xreid.models.loading import BUNDLED_MODEL

log = logging.getLogger(__name__)

CALIBRATION_FILE = "match_calibration.json"
EMBEDDINGS_FILE = "match_calibration.train.npz"
#: the calibration shipped for the bundled model (made by `xreid index calibrate` on an index of it,
#: see docs/METHODS.md#same-person-probability)
BUNDLED_MATCH_CALIBRATION = BUNDLED_MODEL.with_name("default_match_calibration.json")


def embed_keys(embedder: Embedder, root: Path, keys: list[str], path: Path, progress: bool = True
               ) -> tuple[np.ndarray, list[str]]:
    """(embeddings, the keys they belong to) of ``root/key``: read from ``path`` when it holds them
    all for this model set-up, else embedded there by ``embed_to_file`` (resuming its partial file).
    Unreadable images are left out (with a warning)."""
    feats: dict[str, np.ndarray] = {}
    if path.is_file():
        feats, stored = load_features_with_identity(path)
        check_binding(path, stored, embedder.identity(), fields=None, remedy=f"Delete {path} to embed again.")
    if any(k not in feats for k in keys):
        embed_to_file(embedder, root, keys, path, progress=progress)
        feats, _ = load_features_with_identity(path)
    kept = [k for k in keys if k in feats]
    dim = next(iter(feats.values())).shape[-1] if feats else 0
    return (np.stack([feats[k] for k in kept]) if kept else np.zeros((0, dim), np.float32)), kept


def calibrate_index(embedder: Embedder, case: Path, data_root: Path, protocol: str = "peta-reid-val",
                    gallery_size: int = 300, episodes: int = 20, seed: int = 0, threshold: float = THRESHOLD,
                    progress: bool = True) -> MatchCalibration:
    """Embed the protocol's training crops with ``embedder`` (which must be the index's model
    set-up), fit the same-person probability and write it to ``CASE/match_calibration.json``."""
    case = Path(case)
    manifest = read_manifest(case)
    check_binding(case, manifest.get("identity"), embedder.identity(),
                  remedy="Calibrate with the model options the index was built with.")
    proto = load_protocol(protocol, data_root)
    records = [r for r in proto.train if r.pid is not None]
    if not records:
        raise ValueError(f"protocol {protocol}: its train split holds no image with a person id")
    embeddings = case / EMBEDDINGS_FILE
    feats, kept = embed_keys(embedder, proto.image_root, [r.path for r in records], embeddings, progress)
    by_key = {r.path: r for r in records}
    meta = {"protocol": proto.name, "split": "train", "images": len(kept), "model": embedder.name,
            "fitted": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    calibration = fit_match_calibration(feats, [by_key[k].pid for k in kept], [by_key[k].cam for k in kept],
                                        embedder.identity(), gallery_size, episodes, seed, CONTEXT, threshold,
                                        meta, where=f"protocol {protocol}, train split")
    calibration.save(case / CALIBRATION_FILE)
    embeddings.unlink(missing_ok=True)
    return calibration


def load_match_calibration(case: Path, identity: dict) -> MatchCalibration | None:
    """The same-person probability for searches of the index ``case`` whose model identity is
    ``identity`` (``GalleryIndex.open(case).identity``): the index's own ``match_calibration.json``
    (refused with IdentityMismatch when fitted for another model set-up); else, for the bundled
    model, the calibration shipped with xreid; else None (no probability can be shown)."""
    path = Path(case) / CALIBRATION_FILE
    if path.is_file():
        calibration = MatchCalibration.load(path)
        calibration.check_model(identity, where=path)
        return calibration
    if BUNDLED_MATCH_CALIBRATION.is_file():
        bundled = MatchCalibration.load(BUNDLED_MATCH_CALIBRATION)
        if not differences(bundled.identity, identity, MODEL_FIELDS):
            return bundled
    return None
