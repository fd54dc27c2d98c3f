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

from xreid.data.images import load_image
from xreid.data.protocol import load_protocol
from xreid.data.transforms import resize_rgb, to_tensor_batch
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


@torch.no_grad()
def student_rows(student: Embedder, paths: list[Path]) -> np.ndarray:
    """The vector the trainer makes mimic the teacher: the embedding, or for an AANet model its global
    branch's (the 3,072-d descriptor holds it among eleven others)."""
    model = student.model
    if model.spec.head != "aanet":
        return unit_rows(student, paths)
    rows = []
    for s in range(0, len(paths), 64):
        x = to_tensor_batch([resize_rgb(load_image(p), student.preprocess.size) for p in paths[s:s + 64]])
        rows.append(model.training_outputs(model.feature_map(x))["global_bn"].numpy())
    return l2_normalise(np.concatenate(rows))


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
    students = torch.from_numpy(np.concatenate([student_rows(student, train_paths), student_rows(student, test_paths)]))
    n = len(t_train)
    # mean cos = 1 - the training mimic loss, on the crops seen in training and on unseen ones
    train_cos = 1.0 - feature_distillation_loss(students[:n], targets[:n]).item()
    test_cos = 1.0 - feature_distillation_loss(students[n:], targets[n:]).item()
    if student.model.spec.head == "aanet":
        report.print("student: the AANet default's global branch (the vector its mimic loss trains)")
    report.print(f"mean cos(student, centred teacher): train crops (no augmentation) {train_cos:.3f}, "
                 f"test crops {test_cos:.3f}")
    report.save()


if __name__ == "__main__":
    main()
