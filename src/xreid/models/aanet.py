"""AANet: part bands from peak activations, band-pooled attribute features, per-attribute
class activation maps (CAMs), the attribute attention map (AAM), the homoscedastic-uncertainty loss
weighting (docs/METHODS.md#aanet), ``AANetHeads`` wiring them onto a backbone's feature map, and
``AANet``, the network ``model.head: aanet`` trains. Where the paper is vague the choices are:

- **part bands**: each channel's peak-activation row (the row of its largest value) is computed per
  image; the 6 bands are contiguous row ranges whose edges sit at the 1/6 ... 5/6 quantiles of those
  peak rows (equal numbers of channel peaks per band), each band at least one row tall, so a map of
  fewer than 6 rows is refused. The paper says "clustered into 6 bins based on their vertical
  positions"; quantile bins are that clustering in one dimension without iterations or ties to break.
- **AAM threshold**: the CAMs of the chosen attributes, each min-max scaled to [0, 1] per image,
  merged by maximum; values below the merged map's own mean are set to 0 (the paper's "adaptive
  thresholding" without a stated rule).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from xreid.data.vocabulary import WORDS
from xreid.distance import l2_normalise
from xreid.models.reid_net import BackboneNet, ModelSpec

PARTS = 6
REGIONS = ("top", "middle", "bottom", "whole")
_REGION_OF_GROUP = {"hair": 0, "accessories": 0, "upper body": 1, "carrying": 1, "lower body": 2, "footwear": 2}
_AAM_PERSON = {"personalMale", "personalFemale", "female"}


def attribute_region(name: str) -> int:
    """Which region vector predicts attribute ``name``: 0 top (hair, head accessories), 1 middle (upper
    body, carried things), 2 bottom (lower body, footwear), 3 whole (gender, age, anything else)."""
    word = WORDS.get(name)
    return _REGION_OF_GROUP.get(word.group, 3) if word else 3


def in_attention_map(name: str) -> bool:
    """Whether attribute ``name``'s CAM joins the attribute attention map: the paper's reliably visible
    attributes -- gender, hair, upper and lower clothing colour, lower clothing type and length."""
    word = WORDS.get(name)
    if word is None:
        return False
    return (name in _AAM_PERSON or word.group in ("hair", "lower body")
            or (word.group == "upper body" and word.part is not None))


def _quantiles(values: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """torch.quantile (linear interpolation) of each row of ``values`` at ``q``, written with sort and
    gather so the network exports to ONNX: B x N, Q -> B x Q."""
    ordered = values.sort(dim=1).values
    position = q * (values.shape[1] - 1)
    low = position.floor().long()
    high = torch.clamp(low + 1, max=values.shape[1] - 1)
    frac = position - low.float()
    return ordered[:, low] * (1 - frac) + ordered[:, high] * frac


def uncertainty_weighted_loss(losses: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """Kendall et al.'s homoscedastic weighting as AANet uses it: L = sum_i L_i / sigma_i^2 + log sigma_i,
    with s_i = log sigma_i learnt (so sigma stays positive): sum_i L_i exp(-2 s_i) + s_i."""
    if losses.shape != log_sigma.shape:
        raise ValueError(f"{tuple(losses.shape)} losses but {tuple(log_sigma.shape)} uncertainties")
    return (losses * torch.exp(-2.0 * log_sigma) + log_sigma).sum()


def peak_rows(feature_map: torch.Tensor) -> torch.Tensor:
    """B x Z x H x W -> B x Z: the row of each channel's largest activation (first one on ties)."""
    b, z, h, w = feature_map.shape
    return feature_map.reshape(b, z, h * w).argmax(-1) // w


def band_edges(rows: torch.Tensor, height: int, parts: int = PARTS) -> torch.Tensor:
    """Row edges (B x parts+1: 0, e_1, ..., height) of ``parts`` contiguous bands whose inner edges sit at
    the quantiles k / parts of each image's channel peak rows (``rows``, B x Z), moved apart so that
    every band holds at least one row."""
    if not torch.jit.is_tracing() and height < parts:  # (an export traces the size checked when the model ran)
        raise ValueError(f"a feature map of {height} rows cannot be cut into {parts} bands of at least one row")
    q = torch.arange(1, parts, dtype=torch.float32, device=rows.device) / parts
    inner = _quantiles(rows.float(), q)  # B x parts-1, rows in [0, height - 1]
    inner = torch.floor(inner + 0.5).long() + 1  # band k ends with the row nearest its quantile
    edges = [torch.zeros_like(rows[:, 0])]
    for k in range(parts - 1):  # at least one row above each edge and one for each band still to come
        edge = torch.maximum(inner[:, k], edges[-1] + 1)
        edges.append(torch.minimum(edge, torch.full_like(edge, height - (parts - 1 - k))))
    edges.append(torch.full_like(edges[0], height))
    return torch.stack(edges, 1)


def band_pool(feature_map: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Average-pool each image's feature map (B x C x H x W) over its bands (edges B x P+1) -> B x P x C."""
    b, c, h, w = feature_map.shape
    rows = torch.arange(h, device=feature_map.device)
    inside = (rows[None, None] >= edges[:, :-1, None]) & (rows[None, None] < edges[:, 1:, None])  # B x P x H
    weights = inside.float() / inside.sum(-1, keepdim=True).clamp_min(1) / w
    return torch.einsum("bph,bchw->bpc", weights, feature_map)


def region_pool(feature_map: torch.Tensor) -> torch.Tensor:
    """AANet's attribute regions: the top, middle and bottom thirds of the rows and the whole map,
    average-pooled: B x C x H x W -> B x 4 x C."""
    h = feature_map.shape[2]  # a traced tensor while exporting to ONNX: integer arithmetic, no round()
    cuts = [0, (2 * h + 3) // 6, (4 * h + 3) // 6, h]  # round(h / 3), round(2 h / 3): never a tie
    thirds = [feature_map[:, :, cuts[i]:cuts[i + 1]].mean((2, 3)) for i in range(3)]
    return torch.stack(thirds + [feature_map.mean((2, 3))], 1)


def class_activation_maps(feature_map: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Zhou et al.'s CAM for a linear classifier on average-pooled features: CAM_a(h, w) =
    sum_c w_c,a F_c(h, w). feature_map B x C x H x W, weights C x A -> B x A x H x W; the CAM's mean
    over the map is the classifier's logit."""
    return torch.einsum("bchw,ca->bahw", feature_map, weights)


def attention_map(cams: torch.Tensor, selected: Sequence[int]) -> torch.Tensor:
    """The attribute attention map (B x H x W) from the CAMs (B x A x H x W) of the ``selected``
    attributes: each scaled to [0, 1] per image, merged by maximum, values below the merged map's
    mean set to zero (the module docstring says why)."""
    maps = cams[:, list(selected)]
    low = maps.amin((2, 3), keepdim=True)
    high = maps.amax((2, 3), keepdim=True)
    scaled = (maps - low) / (high - low).clamp_min(1e-12)
    merged = scaled.amax(1)
    return torch.where(merged >= merged.mean((1, 2), keepdim=True), merged, torch.zeros_like(merged))


class Classifier(nn.Module):
    """AANet's classifier block: global average pooling (done by the caller), Z -> V, BN, ReLU, V -> C.
    Returns (the batch-normed V vector before the ReLU, the V-layer vector, which the test descriptor
    concatenates, and the logits: None without classes, as in a model file)."""

    def __init__(self, channels: int, hidden: int, classes: int):
        super().__init__()
        self.reduce = nn.Sequential(nn.Linear(channels, hidden, bias=False), nn.BatchNorm1d(hidden))
        self.classifier = nn.Linear(hidden, classes) if classes else None

    def forward(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        normed = self.reduce(pooled)
        v = torch.relu(normed)
        return normed, v, (self.classifier(v) if self.classifier is not None else None)


class AANetHeads(nn.Module):
    """The three AANet branches over a backbone's feature map X (B x Z x H x W): global (ID), part (6
    bands from peak rows, each classified by ID), attribute (1x1 conv Z -> V, 4 region vectors each
    predicting its attributes, a CAM per attribute, the AAM-weighted map classified by ID), and the
    four learnt log-uncertainties of the loss weighting. ``regions[a]`` in 0..3 (top, middle, bottom,
    whole) says which region vector predicts attribute a; ``aam_attributes`` which CAMs form the AAM."""

    def __init__(self, channels: int, classes: int, regions: Sequence[int], aam_attributes: Sequence[int],
                 hidden: int = 256):
        super().__init__()
        if any(r not in (0, 1, 2, 3) for r in regions):
            raise ValueError("attribute regions must be 0 (top), 1 (middle), 2 (bottom) or 3 (whole)")
        self.regions = list(regions)
        self.aam_attributes = list(aam_attributes)
        self.global_id = Classifier(channels, hidden, classes)
        self.parts = nn.ModuleList(Classifier(channels, hidden, classes) for _ in range(PARTS))
        self.attribute_conv = nn.Conv2d(channels, hidden, 1, bias=False)
        self.attribute_fc = nn.Parameter(torch.randn(hidden, len(self.regions)) * 0.01)  # one column per attribute
        self.aam_id = Classifier(channels, hidden, classes)
        self.log_sigma = nn.Parameter(torch.zeros(4))  # global, part, attribute, AAM

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor | None]:
        out: dict[str, torch.Tensor | None] = {}
        out["global_bn"], out["global_v"], out["global_logits"] = self.global_id(x.mean((2, 3)))
        edges = band_edges(peak_rows(x.detach()), x.shape[2])
        pooled = band_pool(x, edges)  # B x 6 x Z
        parts = [head(pooled[:, i]) for i, head in enumerate(self.parts)]
        out["part_v"] = torch.cat([v for _, v, _ in parts], 1)
        out["part_logits"] = None if parts[0][2] is None else torch.stack([logit for _, _, logit in parts], 1)
        v_map = self.attribute_conv(x)  # B x V x H x W
        region_vectors = region_pool(v_map)  # B x 4 x V
        out["attribute_logits"] = torch.einsum("bav,va->ba", region_vectors[:, self.regions], self.attribute_fc)
        out["cams"] = class_activation_maps(v_map, self.attribute_fc)
        aam = attention_map(out["cams"], self.aam_attributes) if self.aam_attributes else torch.ones_like(x[:, 0])
        out["aam"] = aam
        _, out["aam_v"], out["aam_logits"] = self.aam_id((x * aam[:, None]).mean((2, 3)))
        out["descriptor"] = torch.cat([out["global_v"], out["part_v"], region_vectors.flatten(1), out["aam_v"]], 1)
        return out


class AANet(BackboneNet):
    """The backbone and AANet's heads (``ModelSpec.head == 'aanet'``; ``spec.extra``: ``attributes``
    (names), ``regions`` and ``aam`` (indices into them), ``hidden`` (V), optionally ``descriptor``,
    ``branch_weight`` and ``projection``). Its embedding is the ranking descriptor (DESCRIPTORS; by
    default the paper's test descriptor, the V-layer vectors of every classifier concatenated, 12 x V),
    mapped to ``projection`` dimensions by a fitted linear layer when the spec has one
    (``xreid.training.projection``); training outputs are the heads' dict."""

    def __init__(self, spec: ModelSpec, pretrained: bool | str = False):
        super().__init__(spec, pretrained)
        extra = spec.extra
        missing = [k for k in ("attributes", "regions", "aam") if k not in extra]
        if missing:
            raise ValueError(f"an AANet spec needs {', '.join(missing)} in its 'extra' (see aanet_extra)")
        if len(extra["regions"]) != len(extra["attributes"]):
            raise ValueError(f"AANet spec: {len(extra['attributes'])} attributes but {len(extra['regions'])} regions")
        rows = self._feature_rows(spec.input_size[0])
        if rows < PARTS:
            raise ValueError(f"AANet cuts the last feature map into {PARTS} bands of at least one row, but an input "
                             f"{spec.input_size[0]} pixels tall gives {rows} rows with last_stride {spec.last_stride}: "
                             f"use a taller model.input_size or model.last_stride 1")
        hidden = int(extra.get("hidden", 256))
        self.attributes = list(extra["attributes"])
        self.descriptor = extra.get("descriptor", "all")
        if self.descriptor not in DESCRIPTORS:
            raise ValueError(f"AANet spec: descriptor {self.descriptor!r}; choose from {', '.join(DESCRIPTORS)}")
        self.branch_weight = float(extra.get("branch_weight", 1.0))
        check_branch_weight(self.descriptor, self.branch_weight)
        self.heads = AANetHeads(self.backbone.out_channels, spec.num_classes, extra["regions"], extra["aam"], hidden)
        width = hidden if self.descriptor == "global" else hidden * (1 + PARTS + len(REGIONS) + 1)
        dims = int(extra.get("projection", 0))
        if not 0 <= dims <= width:
            raise ValueError(f"AANet spec: projection to {dims} dimensions; the {self.descriptor!r} descriptor has {width}")
        # y = W x + b, W the principal directions and b = -W mean (xreid.training.projection fits them)
        self.projection = nn.Linear(width, dims) if dims else None
        self.embedding_dim = dims or width

    def descriptor_branches(self) -> dict[str, slice]:
        """Where each branch's vector lies in the embedding (``descriptor_branches``); a projected
        embedding mixes the branches, so it is one."""
        if self.projection is not None:
            return {"all": slice(0, self.embedding_dim)}
        return descriptor_branches(self.descriptor, self.heads.global_id.reduce[0].out_features)

    def _feature_rows(self, height: int) -> int:
        """Rows of the backbone's last map for inputs ``height`` pixels tall (one narrow pass, no statistics
        updated)."""
        was_training = self.backbone.training
        self.backbone.eval()
        with torch.no_grad():
            rows = self.backbone(torch.zeros(1, 3, height, 16)).shape[2]
        self.backbone.train(was_training)
        return rows

    def embed_feature_map(self, feature_map: torch.Tensor) -> torch.Tensor:
        return self.ranking_descriptor(self.heads(feature_map))

    def ranking_descriptor(self, out: dict) -> torch.Tensor:
        """What this model ranks with, from its heads' outputs (``ranking_descriptor``), projected when
        the model has a projection."""
        desc = ranking_descriptor(out, self.descriptor, self.branch_weight)
        return desc if self.projection is None else self.projection(desc)

    def training_outputs(self, feature_map: torch.Tensor) -> dict[str, torch.Tensor | None]:
        return self.heads(feature_map)

    def attribute_maps(self, images: torch.Tensor) -> torch.Tensor:
        """The native per-attribute class activation maps (B x A x H x W, feature-map resolution); only
        the attribute branch runs."""
        return class_activation_maps(self.heads.attribute_conv(self.feature_map(images)), self.heads.attribute_fc)


#: What an AANet ranks with: 'all', the paper's test descriptor (every classifier's V vector, 12 x V);
#: 'global', the global branch's batch-normed V vector alone (the one that mimics the teacher; V-d, e.g.
#: 256): a compact descriptor, the other branches still trained beside it; 'balanced', the global
#: branch's batch-normed vector beside the other branches with each branch group given a set share of
#: the length (``balanced_descriptor``; 12 x V).
DESCRIPTORS = ("all", "global", "balanced")


def balanced_descriptor(out: dict, branch_weight: float = 1.0) -> torch.Tensor:
    """The 'balanced' descriptor (docs/METHODS.md#cross-domain-training): the global branch's batch-normed vector at unit
    length, then the parts, the attribute regions and the attention-map branch, each V-vector at unit
    length and each of those three groups scaled to length ``branch_weight``. Where the paper's
    concatenation lets the branches weigh by their raw norms, here the global branch (the one that
    mimics the teacher) and each group weigh by a set share."""
    glob = out["global_bn"]
    rest = out["descriptor"][:, glob.shape[1]:].unflatten(1, (-1, glob.shape[1]))  # B x 11 x V, any batch size
    rest = l2_normalise(rest)
    sizes = [PARTS, len(REGIONS), 1]
    groups = [g.flatten(1) * (branch_weight / n ** 0.5) for g, n in zip(rest.split(sizes, dim=1), sizes)]
    return torch.cat([l2_normalise(glob)] + groups, 1)


def check_branch_weight(descriptor: str, branch_weight: float) -> None:
    """Refuse a branch weight that is negative or not a number, or set for a descriptor without one."""
    if not branch_weight >= 0:
        raise ValueError(f"AANet branch weight {branch_weight}: must be a number, 0 or more")
    if branch_weight != 1.0 and descriptor != "balanced":
        raise ValueError(f"AANet branch weight {branch_weight} is only for the 'balanced' descriptor, "
                         f"not {descriptor!r}")


def ranking_descriptor(out: dict, descriptor: str = "all", branch_weight: float = 1.0) -> torch.Tensor:
    """The embedding an AANet ranks with, from its heads' outputs (``AANetHeads.forward``); see DESCRIPTORS."""
    if descriptor == "balanced":
        return balanced_descriptor(out, branch_weight)
    return out["descriptor"] if descriptor == "all" else out["global_bn"]


def descriptor_branches(descriptor: str = "all", hidden: int = 256) -> dict[str, slice]:
    """The slice of the ranking descriptor each AANet branch fills: for 'all' and 'balanced', global (V),
    parts (6 x V), attribute regions (4 x V), AAM (V), in the order ``AANetHeads.forward`` concatenates
    them; for 'global', the whole descriptor is the global branch."""
    if descriptor == "global":
        return {"global": slice(0, hidden)}
    sizes = {"global": hidden, "parts": PARTS * hidden, "regions": len(REGIONS) * hidden, "aam": hidden}
    out, start = {}, 0
    for name, size in sizes.items():
        out[name] = slice(start, start + size)
        start += size
    return out


def aanet_extra(attributes: Sequence[str], hidden: int = 256, descriptor: str = "all",
                branch_weight: float = 1.0, projection: int = 0) -> dict:
    """The ``ModelSpec.extra`` of an AANet predicting ``attributes``: regions and AAM members chosen by
    ``attribute_region`` and ``in_attention_map``; ``descriptor`` (DESCRIPTORS) stored only when not the
    paper's, so earlier model files keep their spec, ``branch_weight`` only for 'balanced', and
    ``projection`` (the embedding's dimensions after the fitted linear projection) only when set."""
    if descriptor not in DESCRIPTORS:
        raise ValueError(f"AANet descriptor {descriptor!r}; choose from {', '.join(DESCRIPTORS)}")
    check_branch_weight(descriptor, branch_weight)
    names = list(attributes)
    extra = {"attributes": names, "regions": [attribute_region(n) for n in names],
             "aam": [i for i, n in enumerate(names) if in_attention_map(n)], "hidden": hidden}
    if descriptor == "balanced":
        extra = {**extra, "descriptor": descriptor, "branch_weight": float(branch_weight)}
    elif descriptor != "all":
        extra = {**extra, "descriptor": descriptor}
    return {**extra, "projection": int(projection)} if projection else extra
