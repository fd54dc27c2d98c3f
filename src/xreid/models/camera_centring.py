"""Per-camera centring of any model's embeddings (docs/METHODS.md#camera-centring).

Each camera of a site adds its own offset to every embedding (its colours, light, viewpoint and
background), so crops from one camera look alike whoever they show. Centring removes it without
touching the model: a crop's unit embedding minus its camera's mean unit embedding (estimated on the
camera's unlabeled crops), scaled back to unit length. A crop of a camera without a mean (unknown, as
an uploaded query, or with too few crops) is centred on the camera mean nearest to its embedding. It works on black boxes (ONNX, OpenVINO) as on
xreid models, where it adds to the per-camera normalisation statistics (``camera_norm``).

A **camera-centred model** is a small ``.xcam`` file (``xreid adapt ... --out SITE.xcam``): the base
model (spec and content fingerprint) and the means. ``--model SITE.xcam`` then works wherever a model
does (``xreid.models.loading.load_embedder``); its embedder routes each crop by camera like a model
with camera statistics.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xreid.distance import l2_normalise
from xreid.models.embedders import Embedder

#: the file suffix of a camera-centred model
SUFFIX = ".xcam"
#: what the file says it is (and the version of its layout)
FORMAT = "xreid-camera-centring/1"


def camera_means(features: np.ndarray, cameras: Sequence[str], min_crops: int
                 ) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """(camera -> mean unit embedding of its crops, for cameras with at least ``min_crops``; camera ->
    crops, for the cameras left out). Crops whose camera is '' are not counted."""
    if len(features) != len(cameras) or not len(features):
        raise ValueError(f"{len(features)} embeddings and {len(cameras)} cameras: need one camera per crop")
    from xreid.models.camera_norm import camera_groups

    unit = l2_normalise(np.asarray(features, np.float64))
    groups, left_out = camera_groups(cameras, min_crops)
    return {cam: unit[rows].mean(axis=0) for cam, rows in groups.items()}, left_out


def nearest_mean(features: np.ndarray, means: np.ndarray) -> np.ndarray:
    """For each row, the index of the camera mean (a row of ``means``) most similar to its unit
    embedding: the camera a crop of unknown camera most likely comes from."""
    return np.argmax(l2_normalise(np.asarray(features, np.float32)) @ np.asarray(means, np.float32).T, axis=1)


def centre(features: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """``normalise(normalise(f) - m)`` for each row f: the camera's offset taken away. ``mean``: one
    vector m for all rows, or one per row."""
    if np.shape(features)[-1] != np.shape(mean)[-1]:
        raise ValueError(f"embeddings of {np.shape(features)[-1]} dimensions, a camera mean of {np.shape(mean)[-1]}")
    return l2_normalise(l2_normalise(np.asarray(features, np.float32)) - np.asarray(mean, np.float32)).astype(np.float32)


@dataclass(frozen=True)
class CameraCentring:
    """What a ``.xcam`` file holds: the base model and each camera's mean unit embedding."""

    base: str  # the base model's spec ('default', a known model name, or absolute paths, comma-separated)
    base_identity: dict  # the base embedder's identity the means were measured with (``Embedder.identity``)
    cameras: tuple[str, ...]
    means: np.ndarray  # len(cameras) x D
    counts: tuple[int, ...]  # crops per camera

    @property
    def base_fingerprint(self) -> str | None:
        return self.base_identity.get("fingerprint")

    def centred(self, features: np.ndarray, camera: str | None = None) -> np.ndarray:
        """``features`` of crops of ``camera`` centred on its mean; of a camera without one, each on
        its nearest mean."""
        if camera in self.cameras:
            return centre(features, self.means[self.cameras.index(camera)])
        return centre(features, self.means[nearest_mean(features, self.means)])

    def save(self, path: Path) -> None:
        """Write the file atomically (a partial file never takes ``path``)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("wb") as fh:
            np.savez(fh, format=np.array(FORMAT), base=np.array(self.base),
                     base_identity=np.array(json.dumps(self.base_identity)), cameras=np.array(self.cameras, dtype=str),
                     means=self.means.astype(np.float32), counts=np.asarray(self.counts, np.int64))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> "CameraCentring":
        """Read a ``.xcam`` file; a ValueError naming the file when it is not one or is damaged."""
        path = Path(path)
        try:
            z = np.load(path, allow_pickle=False)
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise ValueError(f"not a camera-centred model (expected format {FORMAT})")
            with z:
                if "format" not in z.files or str(z["format"]) != FORMAT:
                    raise ValueError(f"not a camera-centred model (expected format {FORMAT})")
                c = cls(str(z["base"]), json.loads(str(z["base_identity"])), tuple(str(s) for s in z["cameras"]),
                        z["means"].astype(np.float32), tuple(int(n) for n in z["counts"]))
        except ValueError as exc:  # json's decode error included
            raise ValueError(f"{path}: {exc}") from None
        except (OSError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{path}: unreadable camera-centred model ({type(exc).__name__}: {exc})") from None
        if c.means.ndim != 2 or len(c.means) != len(c.cameras) or not len(c.cameras) or len(c.counts) != len(c.cameras):
            raise ValueError(f"{path}: damaged camera-centred model (means {c.means.shape} for {len(c.cameras)} "
                             f"cameras)")
        return c


class CameraCentredEmbedder(Embedder):
    """``base``'s embeddings centred on a camera's mean (``CameraCentring.centred``). Embedding
    without cameras centres each crop on its nearest mean; ``for_camera`` gives the variant of one camera
    (with ``base.for_camera``'s statistics when the base has some). Not a PyTorch model: explained
    with the black-box maps."""

    def __init__(self, base: Embedder, centring: CameraCentring, name: str | None = None):
        self.base, self.centring, self.camera = base, centring, None
        self.name = name or f"{base.name}-centred"
        self.preprocess, self.backend, self.precision = base.preprocess, base.backend, base.precision
        self._variants: dict[str, CameraCentredEmbedder] = {}
        self._root = self

    @property
    def flip_average(self) -> bool:
        return self.base.flip_average

    @flip_average.setter
    def flip_average(self, value: bool) -> None:
        self.base.flip_average = value

    def identity(self) -> dict:
        return {**self.base.identity(), "model": self.name, "fingerprint": self.fingerprint,
                "base": self.base.identity()}

    def run(self, inputs: np.ndarray) -> np.ndarray:
        return self.centring.centred(self.base.run(inputs), self.camera)

    def embed_inputs(self, inputs: np.ndarray) -> np.ndarray:
        return self.centring.centred(self.base.embed_inputs(inputs), self.camera)

    def embed_arrays(self, images) -> np.ndarray:
        return self.centring.centred(self.base.embed_arrays(images), self.camera)

    def camera_names(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.centring.cameras) | set(self.base.camera_names())))

    def for_camera(self, camera: str | None) -> Embedder:
        root = self._root
        if camera not in root.camera_names():
            return root
        if camera not in root._variants:
            variant = CameraCentredEmbedder(root.base.for_camera(camera), root.centring, f"{root.name}@{camera}")
            variant.camera, variant._root = camera, root
            variant.fingerprint = root.fingerprint
            root._variants[camera] = variant
        return root._variants[camera]
