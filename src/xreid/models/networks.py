"""Every xreid network by the name of its head (``ModelSpec.head``), and the one place that builds them."""

from __future__ import annotations

from xreid.models.aanet import AANet
from xreid.models.reid_net import BackboneNet, ModelSpec, ReIDNet

NETWORKS: dict[str, type[BackboneNet]] = {"bnneck": ReIDNet, "aanet": AANet}


def build_model(spec: ModelSpec, pretrained: bool | str = False) -> BackboneNet:
    """The network ``spec`` describes; ``pretrained``: True for the backbone's bundled ImageNet weights,
    a path for others, False for none."""
    if spec.head not in NETWORKS:
        raise ValueError(f"unknown model head {spec.head!r}; choose from {', '.join(NETWORKS)}")
    return NETWORKS[spec.head](spec, pretrained)
