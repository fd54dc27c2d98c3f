"""How closely the bundled model mimics its distillation teacher (OMZ 0277) on training crops vs
unseen test crops: mean cosine between the student's embedding and the teacher's, the teacher's
centred and normalised exactly as the training targets are (``centred_targets``), the cosine taken
as the trainer's mimic loss takes it (``feature_distillation_loss`` = 1 - mean cos). A large gap =
the student learnt the teacher's mapping for the crops it saw rather than in general.

    python benchmarks/mimic_gap.py [--data-root DATA_ROOT] [--train-sample 1000] [--out STEM]

Single view per image (training targets average the image and its mirror); the centring mean is
that of the sampled training crops' teacher embeddings (training uses all of them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from common import M0277, Report, parse, parser

from xreid.data.protocol import load_protocol
from xreid.distance import l2_normalise
from xreid.models.embedders import Embedder
from xreid.models.loading import load_embedder
from xreid.training.losses import feature_distillation_loss
from xreid.training.trainer import centred_targets


def unit_rows(embedder: Embedder, paths: list[Path]) -> np.ndarray:
    result = embedder.embed_paths(paths)
    if result.skipped:
        raise SystemExit(f"unreadable images: {[str(e) for e in result.skipped]}")
    return l2_normalise(result.features)


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--train-sample", type=int, default=1000)
    args = parse(ap)
    report = Report(args.out)
    proto = load_protocol("peta-reid", args.data_root)
    teacher, student = load_embedder(M0277), load_embedder("default", backend="torch")
    train_paths = [proto.image_root / r.path for r in proto.train]
    test_paths = [proto.image_root / r.path for r in proto.test_images()]
    sample = np.random.default_rng(0).choice(len(train_paths), args.train_sample, replace=False)
    train_paths = [train_paths[i] for i in sample]

    t_train, t_test = unit_rows(teacher, train_paths), unit_rows(teacher, test_paths)
    targets = centred_targets(np.concatenate([t_train, t_test]), mean=t_train.mean(0))
    students = torch.from_numpy(np.concatenate([unit_rows(student, train_paths), unit_rows(student, test_paths)]))
    n = len(t_train)
    # mean cos = 1 - the training mimic loss, on the crops seen in training and on unseen ones
    train_cos = 1.0 - feature_distillation_loss(students[:n], targets[:n]).item()
    test_cos = 1.0 - feature_distillation_loss(students[n:], targets[n:]).item()
    report.print(f"mean cos(student, centred teacher): train crops (no augmentation) {train_cos:.3f}, "
                 f"test crops {test_cos:.3f}")
    report.save()


if __name__ == "__main__":
    main()
