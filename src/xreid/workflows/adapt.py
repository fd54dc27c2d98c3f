"""``xreid adapt``: fine-tune a model on the unlabeled crops of the user's cameras (training.adapt).

The crops come from a case (an index folder: its images under the data root, its ``track`` column
if any; a sighting from footage, ``xreid index build --video``, gives all its kept crops as one track), a folder of images, or a CSV list (``path`` column, optional
``camera`` / ``track`` columns; paths relative to the data root). Progress is checkpointed in
``OUT.adapt/`` beside the output and resumed with ``--resume``; the model file is written atomically
at the end.

``--out SITE.xcam`` instead centres any model's embeddings per camera (``centre_cameras``): no
training, a black box included.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from xreid.index.metadata import CAMERA
from xreid.training.adapt import AdaptConfig, adapt_model

#: the case / list column naming each crop's track (crops of one person in consecutive frames)
TRACK = "track"


@dataclass
class AdaptInput:
    paths: list[Path]
    keys: list[str]
    tracks: np.ndarray | None  # one track name per crop ('' = none), None when the input has no track column
    problems: list[str] = field(default_factory=list)
    cameras: np.ndarray | None = None  # one camera name per crop ('' = unknown), None when none is known


@dataclass
class AdaptReport:
    out: Path
    finished: bool
    images: int
    skipped: list[str]
    history: list[dict]
    tracks: int
    cameras: list[str] = field(default_factory=list)  # the cameras the model now holds statistics for
    cameras_left_out: dict[str, int] = field(default_factory=dict)  # camera -> crops, too few for statistics

    def statistics_note(self) -> str:
        """What the model now holds of per-camera statistics, for the command's closing line."""
        from xreid.models.camera_norm import is_appearance_group
        from xreid.training.camera_norm import MIN_CROPS

        groups = [c for c in self.cameras if is_appearance_group(c)]
        note = (f"; normalisation statistics for {len(groups)} appearance group(s) (the crops name no cameras)"
                if groups else f"; normalisation statistics for {len(self.cameras)} camera(s)" if self.cameras else "")
        if self.cameras_left_out:
            note += f"; too few crops for statistics (below {MIN_CROPS}): " + ", ".join(
                f"{c} ({n})" for c, n in sorted(self.cameras_left_out.items()))
        return note


def read_input(source: Path, data_root: Path | None) -> AdaptInput:
    """The crops of ``source``: a case folder (``index.json`` inside; keys under ``data_root``), an image
    folder (searched recursively) or a CSV list (paths under ``data_root``, or absolute)."""
    from xreid.data.folder import load_folder
    from xreid.data.peta import LoadReport

    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such case, image folder or list file")
    if source.is_dir() and any((source / name).is_file() for name in ("manifest.json", "index.json")):
        from xreid.index.gallery import GalleryIndex

        if data_root is None:
            raise ValueError(f"{source}: a case's images are read under the data root it was built from: "
                             f"give --data-root")
        from xreid.index.sightings import is_sighting_key, sighting_folder

        index = GalleryIndex.open(source, ann=False)
        def column(name: str) -> np.ndarray | None:
            if name not in index.columns:
                return None
            vocab, codes = index.columns[name]
            return vocab[codes].astype(str)

        track_col, camera_col = column(TRACK), column(CAMERA)
        paths, keys, tracks, cameras = [], [], [], []
        for i, key in enumerate(str(k) for k in index.keys):
            camera = "" if camera_col is None else camera_col[i]
            if is_sighting_key(key):  # a sighting from footage: every crop kept in the case, one track
                crops = sorted(sighting_folder(source, key).glob("crop-*.jpg")) or [source / key]
                paths += crops
                keys += [c.relative_to(source).as_posix() for c in crops]
                tracks += [key] * len(crops)
                cameras += [camera] * len(crops)
            else:
                paths.append(data_root / key)
                keys.append(key)
                tracks.append("" if track_col is None else track_col[i])
                cameras.append(camera)
        has_tracks = track_col is not None or any(tracks)
        return AdaptInput(paths, keys, np.array(tracks) if has_tracks else None, cameras=known_cameras(cameras))
    if source.is_dir():
        from xreid.index.metadata import fields_from_name

        found = LoadReport()
        records = load_folder(source, report=found)
        cameras = [fields_from_name(r.path).get(CAMERA, "") for r in records]
        return AdaptInput([source / r.path for r in records], [r.path for r in records], None, list(found.problems),
                          known_cameras(cameras))
    if source.suffix.lower() in (".csv", ".txt"):
        from xreid.index.metadata import read_gallery_csv

        entries, names = read_gallery_csv(source)
        if not entries:
            raise ValueError(f"{source}: the list names no image")
        root = data_root if data_root is not None else source.parent
        paths = [Path(e.key) if Path(e.key).is_absolute() else root / e.key for e in entries]
        tracks = np.array([e.fields.get(TRACK, "") for e in entries]) if TRACK in names else None
        cameras = [e.fields.get(CAMERA, "") for e in entries]
        return AdaptInput(paths, [e.key for e in entries], tracks, cameras=known_cameras(cameras))
    raise ValueError(f"{source}: not a case folder, an image folder or a .csv list")


def known_cameras(cameras: list[str]) -> np.ndarray | None:
    """One camera name per crop ('' = unknown), or None when no crop names one."""
    return np.array([str(c or "") for c in cameras]) if any(cameras) else None


def work_dir(out: Path) -> Path:
    """Where an adaptation to ``out`` keeps its checkpoint until it finishes."""
    return out.with_name(out.name + ".adapt")


def adapt(model: str, source: Path, out: Path, cfg: AdaptConfig, data_root: Path | None = None,
          resume: bool = False, progress: bool = True, max_batches: int | None = None,
          camera_norm: bool = True) -> AdaptReport:
    """Adapt the xreid model ``model`` to the crops of ``source``; the adapted model goes to ``out``.
    ``camera_norm``: the adapted model also holds normalisation statistics, estimated after the rounds
    (``cfg.rounds`` 0: only those) on each camera's crops when the crops name their cameras, else on
    each group of crops that look alike (``appearance_groups``)."""
    from xreid.data.dataset import decode_all
    from xreid.models.checkpoint import load_model_file, save_model_file
    from xreid.models.fingerprint import fingerprint
    from xreid.models.loading import resolve_model_path
    from xreid.models.reid_net import ModelSpec

    out = Path(out)
    if out.suffix != ".pt":
        raise ValueError(f"{out}: the adapted model is an xreid model file; name it *.pt")
    if out.exists():
        raise FileExistsError(f"{out}: already exists; choose another --out (nothing was changed)")
    path = resolve_model_path(model)
    if path.suffix not in (".pt", ".pth"):
        raise ValueError(f"{model}: only xreid models (.pt) can be adapted; {path.suffix} files are black boxes")
    if cfg.teacher:
        resolve_model_path(cfg.teacher)  # a missing teacher fails before the slow part
    work = work_dir(out)
    if (work / "adapt.pt").exists() and not resume:
        raise FileExistsError(f"{work}: an adaptation to {out} was started; pass --resume to continue it")
    net, ckpt = load_model_file(path)
    spec = ModelSpec.from_dict(ckpt["spec"])
    found = read_input(source, data_root)
    images, keep, errors = decode_all(found.paths, spec.input_size, progress, "decoding crops")
    skipped = found.problems + [str(e) for e in errors]
    if len(images) < 2 * cfg.min_samples:
        raise ValueError(f"{source}: {len(images)} readable crops; adaptation needs at least {2 * cfg.min_samples} "
                         f"(two pseudo-identities of {cfg.min_samples})")
    tracks = None if found.tracks is None else found.tracks[keep]
    origin = {"model": str(path), "fingerprint": fingerprint(path), "input": str(source)}
    net = net.float()
    adapted, history, finished = adapt_model(net, spec, images, cfg, work, tracks=tracks, resume=resume,
                                             progress=progress, max_batches=max_batches, source=origin)
    n_tracks = 0 if tracks is None else len({t for t in tracks if t})
    norms, left_out = {}, {}
    if finished:
        cameras = None if found.cameras is None else found.cameras[keep]
        if camera_norm:
            from xreid.training.camera_norm import appearance_groups, estimate_camera_norms

            if cameras is None:  # no camera named: groups of crops that look alike stand in for cameras
                cameras = appearance_groups(adapted, images)
            norms, left_out = estimate_camera_norms(adapted, images, cameras)
        meta = {**{k: v for k, v in ckpt.get("meta", {}).items() if k in ("config",)},
                "adapted": {**origin, "images": len(images), "tracks": n_tracks, "config": asdict(cfg),
                            "history": history, "cameras": sorted(norms), "cameras_left_out": left_out}}
        save_model_file(adapted, spec, out, meta, camera_norms=norms)
        shutil.rmtree(work, ignore_errors=True)
    return AdaptReport(out if finished else work / "adapt.pt", finished, len(images), skipped, history, n_tracks,
                       sorted(norms), left_out)


@dataclass
class CentringReport:
    out: Path
    images: int
    skipped: list[str]
    cameras: list[str]  # the cameras the file holds a mean for
    cameras_left_out: dict[str, int]  # camera -> crops, too few for a mean


def centre_cameras(model: str, source: Path, out: Path, data_root: Path | None = None, progress: bool = True,
                   backend: str = "auto", precision: str | None = None) -> CentringReport:
    """Write the camera-centred model ``out`` (``.xcam``): ``model`` (any model) with the mean unit
    embedding of each camera of ``source``'s crops that has at least ``MIN_CROPS`` of them
    (``xreid.models.camera_centring``). The crops must name their cameras."""
    from xreid.models.camera_centring import SUFFIX, CameraCentring, camera_means
    from xreid.models.loading import load_embedder, portable_spec
    from xreid.training.camera_norm import MIN_CROPS

    out = Path(out)
    if out.suffix != SUFFIX:
        raise ValueError(f"{out}: a camera-centred model is a {SUFFIX} file")
    if out.exists():
        raise FileExistsError(f"{out}: already exists; choose another --out (nothing was changed)")
    found = read_input(source, data_root)
    if not found.paths:
        raise ValueError(f"{source}: no crops to centre on" + (f" ({'; '.join(found.problems[:3])})"
                                                               if found.problems else ""))
    if found.cameras is None:
        raise ValueError(f"{source}: no crop names its camera (a case's or list's 'camera' column, or camera "
                         f"fields in file names); centring needs each crop's camera")
    embedder = load_embedder(model, backend=backend, precision=precision)
    res = embedder.embed_paths(found.paths, progress=progress, cameras=list(found.cameras))
    skipped = found.problems + [str(e) for e in res.skipped]
    if not res.kept:
        raise ValueError(f"{source}: none of its {len(found.paths)} crops could be read ("
                         + "; ".join(skipped[:3]) + ")")
    means, left_out = camera_means(res.features, found.cameras[res.kept], MIN_CROPS)
    if not means:
        raise ValueError(f"{source}: no camera has {MIN_CROPS} readable crops (" +
                         ", ".join(f"{c}: {n}" for c, n in sorted(left_out.items())) + "); nothing to centre on")
    cams = tuple(sorted(means))
    counts = tuple(int((found.cameras[res.kept] == c).sum()) for c in cams)
    CameraCentring(portable_spec(model), embedder.identity(), cams, np.stack([means[c] for c in cams]),
                   counts).save(out)
    return CentringReport(out, len(res.kept), skipped, list(cams), left_out)
