"""The extension target: a new map method, model format, dataset or index backend is one new
file plus its registration line. Each trivial example below is written as its own module (one new
file) into a temporary package, and registered by adding its module to the one list that names
such modules (one line in one existing file), then used through xreid's ordinary entry points.

Files touched per extension (counted by this test): 1 new file + 1 line in 1 existing file
(``explain/maps/compute.py:MAP_MODULES``, ``models/loading.py:FORMAT_MODULES``,
``data/registry.py:BUILTIN``, ``index/base.py:BACKENDS``)."""

import json
import sys
import textwrap

import numpy as np
import pytest

from conftest import write_image

EXAMPLES = {
    "centre_map": '''
        """A map method: every result's map is a centred blob."""
        import numpy as np

        from xreid.explain.maps.base import SaliencyMap
        from xreid.explain.maps.compute import register_map


        def centre(embedder, head, images, keys, dominant):
            out = []
            for key in keys:
                h, w = images[key].shape[:2]
                yy, xx = np.mgrid[:h, :w]
                out.append(SaliencyMap(np.exp(-((yy - h / 2) ** 2 + (xx - w / 2) ** 2) / (h * w)), "centre", "centre", key))
            return out


        register_map("centre", centre)
        ''',
    "colour_format": '''
        """A model format: a ``.colour`` file holds a 3 x D projection of the mean colour."""
        import numpy as np

        from xreid.models.embedders import Embedder, Preprocess
        from xreid.models.loading import register_format


        class ColourModel(Embedder):
            def __init__(self, path):
                self.name, self.preprocess = path.stem, Preprocess(height=16, width=8, scale=1.0)
                self.projection = np.loadtxt(path, ndmin=2)

            def run(self, inputs):
                return inputs.mean(axis=(2, 3)) @ self.projection


        register_format(".colour", lambda path, overrides: ColourModel(path))
        ''',
    "toy_dataset": '''
        """A dataset: crops named ``p<person>-c<camera>-<n>.png``."""
        import re
        from pathlib import Path

        from xreid.data.folder import load_folder
        from xreid.data.records import ImageRecord
        from xreid.data.registry import Dataset, register

        NAME = re.compile(r"^p(\\d+)-c(\\d+)-")


        def parse_toy(key):
            m = NAME.match(Path(key).name)
            if m is None:
                raise ValueError(f"{key}: not a toy file name")
            return f"toy/{m.group(1)}", f"toy/{m.group(2)}"


        def load_toy(folder, report=None):
            return [ImageRecord(r.path, *parse_toy(r.path)) for r in load_folder(folder, report=report)]


        register(Dataset("toy", "Toy", "toy-crops", load=load_toy, parse_name=parse_toy))
        ''',
    "list_gallery": '''
        """An index backend: rows in plain lists, brute-force search."""
        from pathlib import Path

        import numpy as np

        from xreid.distance import cosine_distance
        from xreid.index.base import Gallery, Hits


        class ListGallery(Gallery):
            def __init__(self, keys, vectors, probabilities, names):
                super().__init__()
                self.keys, self.vectors, self.probs, self.attribute_names = keys, vectors, probabilities, names

            def __len__(self):
                return len(self.keys)

            def search(self, query, k=10, where=None):
                d = cosine_distance(query[None], self.vectors)[0]
                order = np.argsort(d, kind="stable")[:k]
                return Hits(order, [self.keys[i] for i in order], d[order], size=len(self))

            def vectors_of(self, ids):
                return self.vectors[np.asarray(ids, int)]

            def probabilities(self, ids):
                return self.probs[np.asarray(ids, int)]

            def metadata(self, i):
                return {"id": int(i), "path": self.keys[i], "pid": None, "camera": None}

            def image_path(self, i):
                return Path(self.keys[i])
        ''',
}


@pytest.fixture()
def extensions(tmp_path, monkeypatch):
    """Each example written as one new module (one file each) of a temporary package."""
    package = tmp_path / "xreid_extras"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name, source in EXAMPLES.items():
        (package / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield package
    for name in [m for m in sys.modules if m.startswith("xreid_extras")]:
        del sys.modules[name]


def test_each_extension_is_one_file_and_one_registration_line(extensions, tmp_path, monkeypatch):
    import xreid.data.registry as registry
    import xreid.explain.maps.compute as maps
    import xreid.index.base as index_base
    import xreid.models.loading as loading

    # the registration lines: one entry in the list of modules of each kind
    monkeypatch.setattr(maps, "MAP_MODULES", maps.MAP_MODULES + ("xreid_extras.centre_map",))
    monkeypatch.setattr(loading, "FORMAT_MODULES", loading.FORMAT_MODULES + ("xreid_extras.colour_format",))
    monkeypatch.setattr(registry, "BUILTIN", registry.BUILTIN + ("xreid_extras.toy_dataset",))
    monkeypatch.setitem(index_base.BACKENDS, "lists", "xreid_extras.list_gallery:ListGallery")
    # (the registries are copied, so the examples leave no trace after the test)
    monkeypatch.setattr(maps, "MAP_METHODS", dict(maps.MAP_METHODS))
    monkeypatch.setattr(loading, "MODEL_FORMATS", dict(loading.MODEL_FORMATS))
    monkeypatch.setattr(registry, "DATASETS", dict(registry.datasets()))
    new_files = sorted(p.name for p in extensions.glob("*.py") if p.name != "__init__.py")
    assert len(new_files) == 4  # one file per extension

    # a dataset: its files' names are parsed, a protocol of it loads from any folder
    crops = tmp_path / "case" / "toy-crops"
    names = ["p1-c1-0.png", "p1-c2-0.png", "p2-c1-0.png", "p3-c2-0.png"]
    for seed, name in enumerate(names):
        write_image(crops / name, seed, colour=(200, 30, 30) if name.startswith("p1") else None)
    assert registry.parse_name("toy-crops/p2-c1-0.png") == ("toy/2", "toy/1")
    (tmp_path / "case" / "toy.json").write_text(json.dumps({
        "dataset": "toy", "train": [], "test": {"all": {"query": [{"path": "p1-c1-0.png", "pid": "toy/1"}],
                                                        "gallery": [{"path": n, "pid": n[:2]} for n in names[1:]]}}}))
    from xreid.data.protocol import load_protocol

    proto = load_protocol(str(tmp_path / "case" / "toy.json"), tmp_path / "no-data-root")
    assert proto.image_root == crops and len(proto.test_sets[0].gallery) == 3

    # a model format: load_embedder reads it by its suffix
    (tmp_path / "m.colour").write_text("1 0 0 0\n0 1 0 0\n0 0 1 1\n")
    from xreid.models.loading import load_embedder

    model = load_embedder(str(tmp_path / "m.colour"))
    vectors = model.embed_paths([crops / n for n in names]).features
    assert vectors.shape == (4, 4) and model.fingerprint

    # an index backend: a Gallery found by name, searched and explained like the others
    from xreid.explain.attribute_head import AttributeHead
    from xreid.explain.ranking import explain_ranking

    head = AttributeHead(["red"], np.array([[1.0], [-0.5], [-0.5], [0.0]]), np.array([0.5]), {})
    gallery = index_base.backend("lists")(names[1:], vectors[1:], head.calibrated(vectors[1:]), head.names)
    hits = gallery.search(vectors[0], k=3)
    assert hits.keys[0] == "p1-c2-0.png"  # the other red crop of person 1
    explained = explain_ranking(vectors[0], hits, gallery, head)
    assert [r.key for r in explained.results] == hits.keys

    # a map method: a kind --maps accepts, computed with the others
    from xreid.explain.maps.compute import compute_maps, parse_kinds

    assert parse_kinds("centre") == ["centre"]
    images = {key: np.zeros((16, 8, 3), np.uint8) for key in ["query"] + hits.keys}
    images = {maps.QUERY if k == "query" else k: v for k, v in images.items()}
    out = compute_maps(model, head, explained, images, ["centre"])
    assert [m.kind for m in out.maps] == ["centre"] * 3 and "centre" in out.seconds
