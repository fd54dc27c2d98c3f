"""The xreid re-id networks: a backbone and a head (``ModelSpec.head``).

- ``bnneck`` (``ReIDNet``): backbone -> pooling -> (optional reduction) -> BNNeck. The test-time
  embedding is the BNNeck output (Luo et al., "bag of tricks"); the triplet loss sees the pre-BN
  feature and the ID classifier the post-BN one.
- ``aanet`` (``xreid.models.aanet.AANet``): AANet's global, part and attribute branches.

``xreid.models.networks.build_model`` builds either from a spec.

Pixel normalisation lives inside the network (input: RGB in [0, 1]) so exported models need no extra
preprocessing. Identity classifiers are modules named ``classifier``: a model file drops them
(``is_identity_classifier``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from xreid.models.backbones import BACKBONES
from xreid.models.pooling import build_pooling

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ModelSpec:
    """Everything needed to rebuild a ReIDNet (stored in every checkpoint)."""

    backbone: str = "mobilenetv2"
    pooling: str = "gem"
    embedding_dim: int = 0  # 0: keep the backbone's channel count
    last_stride: int = 2
    input_size: tuple[int, int] = (256, 128)  # height, width
    num_classes: int = 0
    head: str = "bnneck"  # 'bnneck' (ReIDNet) or 'aanet' (AANet; its attribute set in ``extra``)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSpec":
        d = dict(d)
        d["input_size"] = tuple(d.get("input_size", (256, 128)))
        return cls(**d)


def is_identity_classifier(key: str) -> bool:
    """Whether a state-dict key belongs to a training-only identity classifier."""
    return "classifier" in key.split(".")


class BackboneNet(nn.Module):
    """What every xreid network shares: the spec, pixel normalisation and the backbone; a subclass
    adds ``embed_feature_map`` (eval-mode embedding of the last map) and its training outputs."""

    embedding_dim: int

    def __init__(self, spec: ModelSpec, pretrained: bool | str = False):
        super().__init__()
        if spec.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {spec.backbone!r}; choose from {sorted(BACKBONES)}")
        self.spec = spec
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.backbone = BACKBONES[spec.backbone](pretrained=pretrained, last_stride=spec.last_stride)

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        """Last convolutional map of RGB images in [0, 1] (the layer visual explanations hook)."""
        return self.backbone((images - self.pixel_mean) / self.pixel_std)

    def embed_feature_map(self, feature_map: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def training_outputs(self, feature_map: torch.Tensor):
        raise NotImplementedError

    def forward(self, images: torch.Tensor):
        """Eval mode: the embedding (the function visual maps explain). Train mode: the head's training
        outputs."""
        if not self.training:
            return self.embed_feature_map(self.feature_map(images))
        return self.training_outputs(self.feature_map(images))


class ReIDNet(BackboneNet):
    def __init__(self, spec: ModelSpec, pretrained: bool | str = False):
        super().__init__(spec, pretrained)
        self.pool = build_pooling(spec.pooling)
        channels = self.backbone.out_channels
        if spec.embedding_dim:
            self.reduction = nn.Sequential(nn.Linear(channels, spec.embedding_dim, bias=False))
            channels = spec.embedding_dim
        else:
            self.reduction = nn.Identity()
        self.embedding_dim = channels
        self.bnneck = nn.BatchNorm1d(channels)
        self.bnneck.bias.requires_grad_(False)
        self.classifier = nn.Linear(channels, spec.num_classes, bias=False) if spec.num_classes else None
        if self.classifier is not None:
            nn.init.normal_(self.classifier.weight, std=0.001)

    def embed_feature_map(self, feature_map: torch.Tensor) -> torch.Tensor:
        """Eval-mode embedding of a last convolutional map (pooling, reduction, BNNeck): lets visual
        explanations run the backbone once per image however many outputs they explain."""
        return self.bnneck(self.reduction(self.pool(feature_map)))

    def training_outputs(self, feature_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(pre-BN feature, embedding, ID logits)."""
        feat = self.reduction(self.pool(feature_map))
        emb = self.bnneck(feat)
        return feat, emb, (self.classifier(emb) if self.classifier is not None else None)
