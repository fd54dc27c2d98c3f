"""How closely the bundled model mimics its distillation teacher (OMZ 0277) on training crops vs
unseen test crops: mean cosine between the student's embedding and the teacher's, the teacher's
centred and normalised exactly as the training targets are. A large gap = the student learnt the
teacher's mapping for the crops it saw rather than in general.

    python benchmarks/mimic_gap.py --data-root DATA_ROOT [--train-sample 1000]

Single view per image (training targets average the image and its mirror); the centring mean is
that of the sampled training crops' teacher embeddings (training uses all of them).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from bench_attributes import M0277

from xreid.data.protocol import load_protocol
from xreid.models.embedders import Embedder, load_embedder
from xreid.paths import resolve_data_root
from xreid.training.trainer import centred_targets


def unit_rows(embedder: Embedder, paths: list[Path]) -> np.ndarray:
    result = embedder.embed_paths(paths)
    if result.skipped:
        raise SystemExit(f"unreadable images: {[str(e) for e in result.skipped]}")
    return result.features / np.linalg.norm(result.features, axis=1, keepdims=True).clip(1e-12)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", type=Path, default=None)
    ap.add_argument("--train-sample", type=int, default=1000)
    args = ap.parse_args()
    proto = load_protocol("peta-reid", resolve_data_root(args.data_root))
    teacher, student = load_embedder(M0277), load_embedder("default")
    train_paths = [proto.image_root / r.path for r in proto.train]
    test_paths = [proto.image_root / r.path for r in proto.test_images()]
    sample = np.random.default_rng(0).choice(len(train_paths), args.train_sample, replace=False)
    train_paths = [train_paths[i] for i in sample]

    t_train, t_test = unit_rows(teacher, train_paths), unit_rows(teacher, test_paths)
    targets = centred_targets(np.concatenate([t_train, t_test]), mean=t_train.mean(0)).numpy()
    agree = (np.concatenate([unit_rows(student, train_paths), unit_rows(student, test_paths)]) * targets).sum(1)
    print(f"mean cos(student, centred teacher): train crops (no augmentation) {agree[:len(t_train)].mean():.3f}, "
          f"test crops {agree[len(t_train):].mean():.3f}")


if __name__ == "__main__":
    main()
