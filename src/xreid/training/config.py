"""Training configuration: a YAML file read into typed dataclasses (no config indirection)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml


@dataclass
class ModelConfig:
    backbone: str = "mobilenetv2"
    backbone_weights: str | None = None  # None: the backbone's bundled ImageNet weights
    pooling: str = "gem"
    input_size: tuple[int, int] = (256, 128)
    last_stride: int = 2
    embedding_dim: int = 0
    freeze_stages: int = 0
    head: str = "bnneck"  # 'bnneck' (the bundled recipe) or 'aanet' (AANet's branches; needs an attributes section)
    aanet_hidden: int = 256  # AANet's V: each classifier's width (the descriptor is 12 x V)
    aanet_descriptor: str = "all"  # AANet's ranking descriptor: 'all' (12 x V), 'global' (its global branch, V-d), 'balanced'
    aanet_branch_weight: float = 1.0  # 'balanced': the length each other branch group gets beside the global one


@dataclass
class DistillConfig:
    teacher: str | None = None  # a model spec for xreid.load_embedder; None disables distillation
    relational_weight: float = 0.0  # in-batch similarity-matrix matching (any embedding size)
    feature_weight: float = 0.0  # per-image cosine to the teacher's embedding (needs equal sizes)
    # 'clean': one cached target per training image (its clean crop and mirror); 'augmented': the teacher
    # embeds each augmented batch as the student sees it, on the fly (training.teacher)
    targets: str = "clean"
    # attribute-only crops (CUHK, MIT; no identity) per batch in the mimic loss of a run without an
    # attribute loss (with one, attributes.attribute_only_batch decides); 0 = none
    attribute_only_batch: int = 0
    # the teacher's OpenVINO inference precision: None = f32; 'bf16' runs faster on CPUs with
    # AVX512-BF16 / AMX at nearly the same embeddings, worth it when it runs every batch
    # (docs/METHODS.md#cross-domain-training)
    teacher_precision: str | None = None


@dataclass
class TrainConfig:
    epochs: int = 30
    id_warm_epochs: int = 2  # ID classification only before the ranking loss starts
    p: int = 16
    k: int = 4
    lr: float = 3.5e-4
    weight_decay: float = 5e-4
    warmup_epochs: int = 2
    margin: float = 0.3
    id_weight: float = 1.0  # cross-entropy weight; lower it when a teacher supplies the main signal
    triplet_weight: float = 1.0
    label_smoothing: float = 0.1
    cutout_prob: float = 0.5
    cutout_start: float = 0.0
    cutout_end: float = 0.3
    crop_pad: int = 8
    color_jitter: float = 0.0  # brightness/contrast/saturation jitter strength (0 = off)
    blur_prob: float = 0.0  # share of images Gaussian-blurred (sigma 0.1-1.5 px; camera focus / resolution)
    scale_jitter: float = 0.0  # zoom by a factor in [1 - s, 1 + s] on half the images (0 = off)
    style_mix: float = 0.0  # probability that a batch's styles are mixed at each early stage (training.style_mix; 0 = off)
    swa_epochs: int = 0  # extra constant-rate epochs whose end-of-epoch weights are averaged (0 = off)
    swa_lr: float = 0.2  # their learning rate, as a fraction of ``lr``
    checkpoint_minutes: float = 5.0
    exclude_subsets: list[str] = field(default_factory=list)  # data subsets left out of training (cross-domain)
    distill: DistillConfig = field(default_factory=DistillConfig)


@dataclass
class AttributesConfig:
    """Multi-task training (docs/METHODS.md#training-recipe): a bias-free linear attribute layer on the
    L2-normalised embedding, trained with the network by class-balanced BCE. ``weight`` 0 = off."""

    weight: float = 0.0
    names: str | list[str] = "explanation"  # 'explanation' (57), 'peta35' (the 35 evaluated) or a list
    attribute_only: bool = True  # add the attribute-only crops (CUHK, MIT; no identity) to each batch
    attribute_only_batch: int = 16  # how many per batch
    balance: str = "inverse"  # class balancing of the BCE (explain.formulas.class_balanced_weights)
    lr_scale: float = 10.0  # the layer's learning rate as a multiple of train.lr (no weight decay)


@dataclass
class AcrnConfig:
    """ACRN training (docs/METHODS.md#acrn-training): the triplet loss's margin shifted by an
    attribute classifier's distances, and a per-attribute weight layer learnt beside the network.
    ``gamma`` 0 = off."""

    gamma: float = 0.0  # weight of the attribute distances in the complementary triplet loss (paper: 0.5)
    classifier: str | None = None  # the model whose embedding the attribute head reads (a model spec)
    head: str | None = None  # its attribute head (.npz); None: fitted like `xreid attributes fit`, in the run
    weight_margin: float = 0.05  # the weight layer's triplet margin (on sum_a w_a dp_a^2)
    weight_decay: float = 1e-3  # its L2 pull towards zero
    weight_lr_scale: float = 10.0  # its learning rate, x train.lr
    mixings: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0])  # test-time choices
    default_mixing: float = 1.0  # used when the protocol has no validation sets to choose on (paper: 1)


@dataclass
class CompactConfig:
    """After training (docs/METHODS.md#compact-projection), an AANet's embedding becomes its
    ``descriptor`` (at ``branch_weight``) projected to ``dim`` dimensions by the principal directions of
    that descriptor on ``fit_crops`` seeded training crops (the subsets ``train.exclude_subsets`` names
    left out); ``attribute_directions``: the directions of an attribute head fitted on the descriptor
    first; ``offset`` > 0: the last dimension a constant, that times the median norm of the others (a
    bias for the head). Its attribute head is then fitted on that embedding as ``xreid attributes fit``
    fits one. Nothing here changes training. ``dim`` 0 = off."""

    dim: int = 0
    descriptor: str = "balanced"
    branch_weight: float = 1.0
    fit_crops: int = 6000
    attribute_directions: bool = False
    offset: float = 0.0


@dataclass
class Config:
    name: str = "run"
    seed: int = 0
    protocol: str = "peta-reid"
    output_dir: str = "runs"
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    attributes: AttributesConfig = field(default_factory=AttributesConfig)
    acrn: AcrnConfig = field(default_factory=AcrnConfig)
    compact: CompactConfig = field(default_factory=CompactConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name


def _build(cls, data: dict, where: str):
    known = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
    kwargs = {}
    for key, value in data.items():
        sub = {"model": ModelConfig, "train": TrainConfig, "distill": DistillConfig,
               "attributes": AttributesConfig, "acrn": AcrnConfig,
               "compact": CompactConfig}.get(key)
        if sub is not None and isinstance(value, dict):
            value = _build(sub, value, f"{where}.{key}")
        if key == "input_size":
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


def config_from_dict(data: dict, where: str = "config") -> Config:
    """A Config from its ``asdict`` form (e.g. the one stored in a model file); missing keys take
    their defaults, unknown keys are an error naming ``where``."""
    return _build(Config, data, where)


def apply_overrides(data: dict, overrides: list[str], where: str = "--set") -> dict:
    """``data`` with each ``KEY.PATH=VALUE`` of ``overrides`` set (VALUE read as YAML: 12, 0.5, null,
    [1, 2], text), e.g. ``train.epochs=12``; unknown keys are caught when the config is built."""
    import copy

    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{where} {item!r}: expected KEY=VALUE, e.g. train.epochs=12")
        *parents, leaf = key.strip().split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"{where} {item!r}: {part} is not a section")
        node[leaf] = yaml.safe_load(value)
    return data


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """The config of a YAML file, with ``overrides`` (``KEY.PATH=VALUE``, see ``apply_overrides``) applied."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file not found")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config must be a YAML mapping")
    if overrides:
        data = apply_overrides(data, overrides)
    cfg = config_from_dict(data, str(path) + (" with --set " + " ".join(overrides) if overrides else ""))
    if cfg.name == "run":
        cfg.name = path.stem
    return cfg


#: Keys a resumed run may change: they affect neither the weights nor the batches.
RESUMABLE_CHANGES = frozenset({"train.checkpoint_minutes", "output_dir",
                               "acrn.mixings", "acrn.default_mixing"}  # test-time choices, after training
                              | {f"compact.{f.name}" for f in fields(CompactConfig)})  # applied after training


def flatten(data: dict, prefix: str = "") -> dict:
    """A nested config dict as {'train.lr': 0.00035, ...}."""
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return out


def config_changes(old: dict, new: dict) -> list[str]:
    """The dotted keys whose values differ between two configs in their ``asdict`` form (missing keys
    take their defaults first, so a run started before a key existed compares equal on it), apart
    from ``RESUMABLE_CHANGES`` and the run name."""
    from dataclasses import asdict

    a = flatten(asdict(config_from_dict(old, "checkpoint config")))
    b = flatten(asdict(config_from_dict(new, "config")))
    return sorted(k for k in a.keys() | b.keys()
                  if a.get(k) != b.get(k) and k not in RESUMABLE_CHANGES and k != "name")
