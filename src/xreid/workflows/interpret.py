"""``xreid interpret fit`` and ``xreid explain --interpreter``: fit an interpreter of a model's
distances on a protocol's training crops, and explain an explained ranking's results with it
(docs/METHODS.md#interpreter)."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from xreid.explain.interpretation import InterpretedPair, InterpretedRanking, contributions, pair_fit
from xreid.models.embedders import Embedder
from xreid.models.interpreter import Interpreter, bundled_trunk, trunk_identity
from xreid.training.interpreter import FitConfig

log = logging.getLogger(__name__)

#: Attention maps drawn per result: the attributes with the largest parts, on both images.
MAPS_PER_RESULT = 3


def cache_folder(out: Path) -> Path:
    """Where a fit keeps its cached inputs and checkpoint: ``INTERP.cache/`` beside ``INTERP``."""
    return out.with_name(out.name + ".cache")


#: Threads the fit's PyTorch steps use. Its steps are small (a batch of 128 cached 7 x 4 maps), so
#: several threads spend their time waiting for each other on a busy machine: one.
FIT_THREADS = 1


def fit(embedder: Embedder, data_root: Path, out: Path, protocol: str = "peta-reid", config: FitConfig | None = None,
        cache: Path | None = None, progress: bool = True, model_name: str = "") -> Interpreter:
    """Fit an interpreter of ``embedder``'s distances on ``protocol``'s training crops and save it to
    ``out`` (atomically). Inputs are cached in ``cache`` (default ``OUT.cache/``): the trunk's maps,
    the target's embeddings, and a checkpoint every epoch, so running the same command again after
    an interruption resumes where it stopped."""
    from xreid.data.labels import label_matrix
    from xreid.data.peta import EXPLANATION_ATTRIBUTES
    from xreid.data.protocol import load_protocol
    from xreid.training.interpreter import FitData, fit_interpreter
    from xreid.training.interpreter_data import cache_trunk_maps, target_embeddings

    config = config or FitConfig()
    out = Path(out)
    cache = Path(cache) if cache is not None else cache_folder(out)
    proto = load_protocol(protocol, data_root)
    records = proto.train
    if not records:
        raise ValueError(f"protocol {protocol}: no training images to fit the interpreter on")
    names = list(EXPLANATION_ATTRIBUTES)
    keys = [r.path for r in records]
    trunk = bundled_trunk()
    t0 = time.monotonic()
    maps = cache_trunk_maps(trunk, trunk_identity(trunk), proto.image_root, keys, cache / "maps", progress)
    targets = target_embeddings(embedder, proto.image_root, keys, cache / "target.npz", progress)
    labels, labelled = label_matrix(records, names)
    data = FitData(maps, targets, labels, labelled, [r.pid for r in records])
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(FIT_THREADS)
    try:
        net, history = fit_interpreter(data, config, checkpoint=cache / "checkpoint.pt", progress=progress)
    finally:
        torch.set_num_threads(threads)
    seen = labels[labelled].any(0) if labelled.any() else np.zeros(len(names), bool)
    absent = [n for n, s in zip(names, seen) if not s]
    meta = {"model": model_name or embedder.name, "protocol": proto.name, "train_images": len(keys),
            "labelled_images": int(labelled.sum()), "config": asdict(config), "history": history,
            "fit_seconds_this_run": float(time.monotonic() - t0), "trunk": trunk_identity(trunk)}
    result = Interpreter(net, names, absent, embedder.identity(), meta, trunk)
    result.save(out)
    return result


def check_target(interp: Interpreter, embedder: Embedder, path: Path | str) -> None:
    """Refuse an interpreter fitted on another model: its components decompose that model's
    distances, not this one's. The message names both models."""
    from xreid.binding import check_binding

    check_binding(path, {"model": interp.meta.get("model"), **interp.target}, embedder.identity(),
                  what="this interpreter explains another model", verb="it explains",
                  remedy="Fit one for it with `xreid interpret fit --model ...`.")


def interpret_ranking(interp: Interpreter, query_image: np.ndarray, result_images: list[np.ndarray],
                      result_keys: list[str], target_distances: list[float], with_maps: bool = True,
                      maps_per_result: int = MAPS_PER_RESULT) -> tuple[InterpretedRanking, list]:
    """The interpreter's decomposition of each (query, result) distance, and (``with_maps``) the
    attention maps of each result's largest parts on both images (``SaliencyMap`` kind
    'interpreter'). Images are RGB uint8 of any size; they are resized to the trunk's input."""
    from xreid.data.transforms import resize_rgb
    from xreid.explain.interpretation import component_distances
    from xreid.explain.maps.base import QUERY, SaliencyMap

    t0 = time.perf_counter()
    size = interp.trunk.input_size
    batch = [resize_rgb(im, size) for im in [query_image, *result_images]]
    z, att, _ = interp.run(batch)
    parts = component_distances(z[0], z[1:]) if result_keys else np.zeros((0, len(interp.names)))
    shares = contributions(parts)
    absent = set(interp.absent)
    pairs, maps = [], []
    for i, key in enumerate(result_keys):
        order = [a for a in np.argsort(-parts[i], kind="stable") if interp.names[a] not in absent]
        pairs.append(InterpretedPair(key=key, parts=[float(v) for v in parts[i]],
                                     shares=[float(v) for v in shares[i]],
                                     fit=pair_fit(float(parts[i].sum()), float(target_distances[i])),
                                     largest=[interp.names[a] for a in order[:5]],
                                     largest_shares=[float(shares[i, a]) for a in order[:5]]))
        if with_maps:
            for a in order[:maps_per_result]:
                label = interp.names[a]
                maps.append(SaliencyMap(_upsample(att[0, a], size), "interpreter", label, QUERY, key))
                maps.append(SaliencyMap(_upsample(att[i + 1, a], size), "interpreter", label, key, None))
    ranking = InterpretedRanking(attribute_names=list(interp.names), absent=list(interp.absent),
                                 model=interp.meta.get("model", ""), pairs=pairs,
                                 seconds=float(time.perf_counter() - t0))
    return ranking, maps


def _upsample(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An attention map (h x w, sums to 1) scaled to the image size (H x W), bilinear."""
    import torch

    t = torch.from_numpy(np.asarray(values, np.float32))[None, None]
    return torch.nn.functional.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False)[0, 0].numpy()
