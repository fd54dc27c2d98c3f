"""`xreid adapt` -- clustering by hand, and the command end to end on tiny crops."""

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import assert_same_weights
from xreid.training.adapt import (
    AdaptConfig,
    centroids,
    cluster_contrast_loss,
    dbscan,
    pseudo_batches,
    pseudo_labels,
    same_track_zeroed,
)


def _line(points):
    x = np.asarray(points, float)
    return np.abs(x[:, None] - x[None, :])


def test_dbscan_by_hand():
    # two dense groups and a lone point
    assert dbscan(_line([0, 0.1, 0.2, 5, 5.1, 5.2, 10]), eps=0.15, min_samples=2).tolist() == [0, 0, 0, 1, 1, 1, -1]
    # 0.1 is the only core point (3 within 0.15: 0, 0.1, 0.25); 0 and 0.25 join it as border points
    assert dbscan(_line([0, 0.1, 0.25]), eps=0.15, min_samples=3).tolist() == [0, 0, 0]
    # a border point between two clusters joins its nearest core point's
    labels = dbscan(_line([0, 0.1, 0.2, 0.33, 0.5, 0.6, 0.7]), eps=0.15, min_samples=3)
    assert labels.tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert dbscan(_line([0, 1, 2]), eps=0.5, min_samples=2).tolist() == [-1, -1, -1]
    # numbered by first appearance
    assert dbscan(_line([5, 5.1, 0, 0.1]), eps=0.2, min_samples=2).tolist() == [0, 0, 1, 1]


def test_same_track_distances_are_zeroed():
    d = np.full((3, 3), 0.9)
    np.fill_diagonal(d, 0)
    got = same_track_zeroed(d, np.array(["a", "", "a"]))
    assert got[0, 2] == got[2, 0] == 0 and got[0, 1] == 0.9 and got[1, 1] == 0
    assert same_track_zeroed(d, None) is d
    # crops without a track ('') are never joined to each other
    assert same_track_zeroed(d, np.array(["", "", "b"]))[0, 1] == 0.9


def test_cluster_contrast_by_hand():
    centres = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    emb = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    labels = torch.tensor([0, 0, -1])  # the third row has no cluster: left out
    t = 0.5
    # row 0: cos (1, 0) -> logits (2, 0), label 0; row 1: cos (0, 1) -> logits (0, 2), label 0
    want = 0.5 * (-np.log(np.exp(2) / (np.exp(2) + 1)) - np.log(1 / (1 + np.exp(2))))
    assert float(cluster_contrast_loss(emb, labels, centres, t)) == pytest.approx(want, rel=1e-5)
    assert float(cluster_contrast_loss(emb, torch.tensor([-1, -1, -1]), centres, t)) == 0.0


def test_centroids_are_normalised_means():
    f = torch.tensor([[3.0, 0.0], [0.0, 4.0], [1.0, 1.0], [5.0, 5.0]])
    c = centroids(f, np.array([0, 0, 1, -1]))
    torch.testing.assert_close(c, torch.tensor([[2 ** -0.5, 2 ** -0.5], [2 ** -0.5, 2 ** -0.5]]))


def test_pseudo_labels_group_people_and_tracks():
    rng = np.random.default_rng(0)
    people = rng.normal(size=(3, 16))
    feats = np.concatenate([p + 0.05 * rng.normal(size=(8, 16)) for p in people] + [rng.normal(size=(2, 16))])
    cfg = AdaptConfig(k1=6, k2=2, eps=0.6, min_samples=3)
    labels = pseudo_labels(feats, cfg)
    assert len(set(labels[:24])) == 3 and -1 not in labels[:24]
    assert all(len(set(labels[8 * i:8 * i + 8])) == 1 for i in range(3))
    assert (labels[24:] == -1).all()
    tracks = np.array([""] * 24 + ["t9", "t9"])  # the two strays are one track: a pseudo-identity of their own
    with_tracks = pseudo_labels(feats, cfg, tracks)
    assert with_tracks[24] == with_tracks[25] == 3
    # plain cosine distances: the people are 0.05 apart from their centre, the strays far
    cosine = pseudo_labels(feats, AdaptConfig(distance="cosine", eps=0.1, min_samples=3))
    assert all(len(set(cosine[8 * i:8 * i + 8])) == 1 for i in range(3)) and (cosine[24:] == -1).all()
    with pytest.raises(ValueError, match="'euclid'"):
        pseudo_labels(feats, AdaptConfig(distance="euclid"))


def test_pseudo_batches_are_p_by_k_and_seeded():
    labels = np.array([0, 0, 0, 1, 1, 2, -1])
    a = pseudo_batches(labels, p=2, k=3, count=4, seed=0, rnd=1)
    assert len(a) == 4 and all(len(b) == 6 for b in a) and all(-1 not in labels[b] for b in a)
    assert all(len(set(labels[b])) == 2 for b in a)
    assert all((x == y).all() for x, y in zip(a, pseudo_batches(labels, 2, 3, 4, 0, 1)))


def _crops(folder, n_people=4, per=5, seed=0):
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, (n_people, 3))
    rows = []
    for i in range(n_people):
        for j in range(per):
            arr = np.clip(colours[i] + rng.normal(0, 12, (64, 32, 3)), 0, 255).astype(np.uint8)
            path = folder / f"cam{j % 2}" / f"p{i}_{j}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(path)
            rows.append((path.relative_to(folder).as_posix(), f"c{j % 2}", f"t{i}" if j < 2 else ""))
    return rows


def _small_model(path):
    from xreid.models.checkpoint import save_model_file
    from xreid.models.networks import build_model
    from xreid.models.reid_net import ModelSpec

    spec = ModelSpec(input_size=(64, 32), embedding_dim=8)
    torch.manual_seed(0)
    save_model_file(build_model(spec, pretrained=True).eval(), spec, path, {})
    return path


def test_adapt_command_end_to_end_resumes_and_refuses_bad_input(tmp_path):
    """`xreid adapt` on a folder and on a CSV list with tracks: a model file the runtime embeds with, an
    exact resume after --max-batches, and clear errors for bad input."""
    from typer.testing import CliRunner

    from xreid.cli import app
    from xreid.models.loading import load_embedder

    torch.set_num_threads(1)
    crops = tmp_path / "crops"
    rows = _crops(crops)
    model = _small_model(tmp_path / "m.pt")
    common = ["--model", str(model), "--rounds", "2", "--batches", "2", "--eps", "0.6", "--min-samples", "2", "--k1", "4",
              "--data-root", str(crops)]
    run = CliRunner().invoke
    res = run(app, ["adapt", str(crops), "--out", str(tmp_path / "a.pt")] + common)
    assert res.exit_code == 0, res.output
    assert "adapted model written" in res.output and "attributes fit" in res.output
    meta = torch.load(tmp_path / "a.pt", weights_only=True)["meta"]["adapted"]
    assert meta["images"] == 20 and len(meta["history"]) == 2 and meta["history"][0]["clusters"] >= 2
    emb = load_embedder(tmp_path / "a.pt").embed_arrays(np.zeros((2, 64, 32, 3), np.uint8))
    assert emb.shape == (2, 8)
    assert not (tmp_path / "a.pt.adapt").exists()
    # a CSV list with tracks; interrupted after 3 batches, resumed: the same weights as straight through
    (tmp_path / "list.csv").write_text("path,camera,track\n" + "".join(f"{p},{c},{t}\n" for p, c, t in rows))
    res = run(app, ["adapt", str(tmp_path / "list.csv"), "--out", str(tmp_path / "b.pt")] + common)
    assert res.exit_code == 0 and "4 tracks" in res.output, res.output
    res = run(app, ["adapt", str(tmp_path / "list.csv"), "--out", str(tmp_path / "c.pt"), "--max-batches", "3"] + common)
    assert res.exit_code == 0 and "--resume" in res.output, res.output
    res = run(app, ["adapt", str(tmp_path / "list.csv"), "--out", str(tmp_path / "c.pt")] + common)
    assert res.exit_code == 2 and "--resume" in res.output
    res = run(app, ["adapt", str(tmp_path / "list.csv"), "--out", str(tmp_path / "c.pt"), "--resume"] + common)
    assert res.exit_code == 0, res.output
    assert_same_weights(tmp_path / "b.pt", tmp_path / "c.pt")
    # bad input: each a clear message, nothing written
    (tmp_path / "empty").mkdir()
    for args, message in [
        ([str(tmp_path / "empty"), "--out", str(tmp_path / "d.pt")], "no image files"),
        ([str(tmp_path / "nowhere"), "--out", str(tmp_path / "d.pt")], "no such case"),
        ([str(crops), "--out", str(tmp_path / "a.pt")], "already exists"),
        ([str(crops), "--out", str(tmp_path / "d.onnx")], "name it *.pt"),
    ]:
        res = run(app, ["adapt"] + args + common)
        assert res.exit_code == 2 and message in res.output, (args, res.output)
    res = run(app, ["adapt", str(crops), "--out", str(tmp_path / "d.pt"), "--model", str(tmp_path / "x.xml")])
    assert res.exit_code == 2 and "x.xml" in res.output
    assert not (tmp_path / "d.pt").exists()


def test_a_stop_at_a_round_boundary_is_the_shorter_run_and_resumes_exactly(tmp_path):
    """`--max-batches` ending round r leaves the state a `--rounds r` run ends with (what
    benchmarks/adapt_length.py evaluates), and resuming from there gives the full run's weights."""
    from typer.testing import CliRunner

    from xreid.cli import app

    torch.set_num_threads(1)
    crops = tmp_path / "crops"
    _crops(crops)
    model = _small_model(tmp_path / "m.pt")
    common = ["--model", str(model), "--batches", "2", "--eps", "0.6", "--min-samples", "2", "--k1", "4",
              "--data-root", str(crops)]
    run = CliRunner().invoke
    for out, extra in [("one.pt", ["--rounds", "1"]), ("two.pt", ["--rounds", "2"]),
                       ("cut.pt", ["--rounds", "2", "--max-batches", "2"])]:
        res = run(app, ["adapt", str(crops), "--out", str(tmp_path / out)] + common + extra)
        assert res.exit_code == 0, res.output
    one = torch.load(tmp_path / "one.pt", weights_only=True)["state_dict"]
    cut = torch.load(tmp_path / "cut.pt.adapt" / "adapt.pt", weights_only=True)
    assert (cut["round"], cut["batch"]) == (0, 2)  # the next batch to run: past the end of round 1
    for k in one:
        torch.testing.assert_close(one[k], cut["state_dict"][k].to(one[k].dtype), msg=k)
    res = run(app, ["adapt", str(crops), "--out", str(tmp_path / "cut.pt"), "--rounds", "2", "--resume"] + common)
    assert res.exit_code == 0, res.output
    two = torch.load(tmp_path / "two.pt", weights_only=True)["state_dict"]
    resumed = torch.load(tmp_path / "cut.pt", weights_only=True)["state_dict"]
    for k in two:
        torch.testing.assert_close(two[k], resumed[k], msg=k)


def test_a_footage_case_gives_each_sighting_as_one_track(tmp_path, monkeypatch):
    """A case's sighting rows (footage) bring every crop kept in the case as one track; other rows are
    read under the data root, with the case's track column when it has one."""
    from types import SimpleNamespace

    import xreid.index.gallery as gallery
    from xreid.workflows.adapt import read_input

    case = tmp_path / "case"
    (case / "manifest.json").parent.mkdir(parents=True)
    (case / "manifest.json").write_text("{}")
    folder = case / "sightings" / "v1" / "00003"
    folder.mkdir(parents=True)
    for k in range(3):
        (folder / f"crop-{k}.jpg").write_bytes(b"")
    keys = np.array(["sightings/v1/00003/crop-0.jpg", "photos/a.jpg"])
    fake = SimpleNamespace(keys=keys, columns={})
    monkeypatch.setattr(gallery.GalleryIndex, "open", classmethod(lambda cls, c, ann=True: fake))
    found = read_input(case, tmp_path / "root")
    assert found.paths == [folder / f"crop-{k}.jpg" for k in range(3)] + [tmp_path / "root" / "photos/a.jpg"]
    assert found.tracks.tolist() == [keys[0]] * 3 + [""]
    with pytest.raises(ValueError, match="--data-root"):
        read_input(case, None)
