"""The ``xreid index`` commands (build, add, export, calibrate, search) and ``xreid serve``:
options and messages only; the work is in ``xreid.workflows.index``, ``xreid.workflows.match_calibration``
and ``xreid.serve``."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer

from xreid.cli_options import (DataRoot, HeadOpt, ImagesOpt, ModelOptions, command, fail, list_skipped, one_source,
                               option_group, outputs)
from xreid.paths import resolve_data_root
from xreid.workflows.loading import load_head

index_app = typer.Typer(help="A persistent gallery index: build it from images, add to it, export, search.",
                        no_args_is_help=True)
CaseArg = Annotated[Path, typer.Argument(help="The case: an index folder (from `xreid index build --out`).")]
RayShardsOpt = Annotated[Optional[str], typer.Option(
    "--ray", metavar="ADDRESS", help="A sharded case (--shards N) with each shard held by a Ray actor, spread over "
                                     "the cluster's nodes: its address (ray://... or HOST:PORT), 'auto' (the running "
                                     "one) or 'local' (start one here). Every node must see the case at the same "
                                     "path.")]


@dataclass
class Footage:
    """The footage options of `index build` and `index add`."""

    video: Optional[Path] = None
    camera: Optional[str] = None
    start: Optional[str] = None
    detector: str = "person-detection-retail-0013"
    stride: int = 1
    confidence: float = 0.1
    fps: Optional[float] = None


footage_options = option_group([inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                                  annotation=annotation) for name, default, annotation in [
    ("video", None, Annotated[Optional[Path], typer.Option(
        "--video", help="Footage: a video file, a folder of videos or of frame images, or a CSV (path, camera, "
                        "start) listing videos; each becomes sightings (detected, tracked people).")]),
    ("camera", None, Annotated[Optional[str], typer.Option(help="--video: camera name (default: CSV, else the file name).")]),
    ("start", None, Annotated[Optional[str], typer.Option(
        help="--video: start time, ISO 8601 (default: CSV, else the container's creation time, else unknown).")]),
    ("detector", "person-detection-retail-0013", Annotated[str, typer.Option(
        help="--video: person detector, an SSD-output OpenVINO .xml / .onnx file or a short name from "
             "`xreid models get`.")]),
    ("stride", 1, Annotated[int, typer.Option(min=1, help="--video: detect on every N-th frame.")]),
    ("confidence", 0.1, Annotated[float, typer.Option(help="--video: detections at or above this go to the tracker.")]),
    ("fps", None, Annotated[Optional[float], typer.Option(
        help="--video on a folder of frame images: its frame rate (default 10).")]),
]], Footage, "footage")


@command(index_app, "build", models=True)
@footage_options
def index_build(
    opts: ModelOptions,
    footage: Footage,
    out: Annotated[Path, typer.Option(help="The case to create: an index folder (an interrupted build there is continued).")],
    images: ImagesOpt = None,
    list_file: Annotated[Optional[Path], typer.Option(
        "--list", help="CSV with a header row (required): a 'path' column (relative to the data root; absolute "
                       "paths and '..' are refused), optional camera/cam, pid/person_id, "
                       "time/timestamp (ISO 8601 or seconds) and any other columns (kept as searchable fields).")] = None,
    head: HeadOpt = None,
    data_root: DataRoot = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per committed batch.")] = 256,
    shards: Annotated[int, typer.Option(min=1, help="Write the index as this many shards (searched in parallel "
                                                    "and merged; a row's shard is a hash of its path).")] = 1,
    ray: Annotated[Optional[str], typer.Option(
        "--ray", metavar="ADDRESS", help="Embed on a Ray cluster with Ray Data: its address (ray://... or "
                                         "HOST:PORT), 'auto' (the running one) or 'local' (start one here). "
                                         "Workers need xreid installed.")] = None,
    workers: Annotated[int, typer.Option(
        min=1, help="With --ray: model actors (one model each; for footage, one video each at a time).")] = 2,
    gpus_per_worker: Annotated[float, typer.Option(min=0, help="With --ray: GPUs per actor (0: CPU).")] = 0.0,
    scan_floor: Annotated[Optional[float], typer.Option(
        min=0.0, max=1.0, help="The smallest fraction of the approximate index's lists a search scans (recorded in "
                               "the index; default 1: every list, chosen on PETA-ReID-val with 100,000 to "
                               "1,000,000 distractors). Lower is faster and misses more matches of people the "
                               "gallery holds few views of.")] = None,
) -> None:
    """Index images, or footage (--video: people detected, tracked and stored as sightings):
    embeddings, calibrated attribute probabilities, thumbnails and metadata, committed as they are
    done (rerun the same command to resume an interrupted build). --shards applies to images;
    --ray to images (Ray Data batches) and footage (one video per task)."""
    import functools

    from xreid.workflows.index import build_index
    from xreid.workflows.loading import embedder_and_detector, model_and_head

    outputs(folders=(out,))
    ray_address = None if ray == "local" else ray
    if footage.video is not None:
        if shards > 1:
            fail("--shards indexes images; footage (--video) is indexed unsharded")
        ray_opts = None
        if ray is not None:
            ray_opts = {"make": functools.partial(embedder_and_detector, opts, footage.detector),
                        "concurrency": workers, "address": ray_address, "num_gpus": gpus_per_worker}
        _index_footage(opts, head, out, footage, append=False, ray=ray_opts, scan_floor=scan_floor)
        return
    ray_opts = None
    if ray is not None:
        ray_opts = {"make": functools.partial(model_and_head, opts, head), "concurrency": workers,
                    "address": ray_address, "num_gpus": gpus_per_worker}
    _index_images(functools.partial(build_index, shards=shards, ray=ray_opts, scan_floor=scan_floor), opts, head, data_root, out, images,
                  list_file, batch_size,
                  interrupted=f"every finished batch is committed in {out}: run the same command to resume")


@command(index_app, "add", models=True)
@footage_options
def index_add(
    opts: ModelOptions,
    footage: Footage,
    case: CaseArg,
    images: ImagesOpt = None,
    list_file: Annotated[Optional[Path], typer.Option("--list", help="CSV list as for `xreid index build`.")] = None,
    head: HeadOpt = None,
    data_root: DataRoot = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per committed batch.")] = 256,
) -> None:
    """Append images or footage (--video) to an index (the model and attribute head must be the
    index's); images and videos it already holds are skipped."""
    from xreid.workflows.index import add_to_index

    if footage.video is not None:
        _index_footage(opts, head, case, footage, append=True)
        return
    _index_images(add_to_index, opts, head, data_root, case, images, list_file, batch_size,
                  interrupted=f"the batches committed so far are in {case}")


def _index_footage(opts: ModelOptions, head, case: Path, f: Footage, append: bool, ray: dict | None = None,
                   scan_floor: float | None = None) -> None:
    """`index build --video` / `index add --video`: run the footage workflow, report."""
    from xreid.workflows.footage import FootageOptions, index_footage
    from xreid.workflows.loading import head_name, load_detector

    embedder = opts.load()
    attr_head = load_head(opts.model, head)
    try:
        report = index_footage(embedder, attr_head, load_detector(f.detector, opts.precision), f.video, case,
                               camera=f.camera, start=f.start,
                               opts=FootageOptions(confidence=f.confidence, stride=f.stride, fps=f.fps),
                               head_name=head_name(opts.model, head), append=append, say=typer.echo, ray=ray,
                               scan_floor=scan_floor)
    except KeyboardInterrupt:
        fail(f"interrupted; the committed chunks and videos are kept in {case}: run the same command to resume",
             code=130)
    frames = sum(v.get("frames_read") or 0 for v in report.videos)
    typer.echo(f"{report.case}: {report.count} rows ({report.added} sightings added from {len(report.videos)} "
               f"video(s), {frames} frames, {report.seconds:.0f} s)")
    list_skipped(report.skipped, "problem(s)")


def _index_images(job, opts: ModelOptions, head, data_root, case: Path, images, list_file, batch_size: int,
                  interrupted: str) -> None:
    """What `index build` and `index add` share: run ``job`` (build_index or add_to_index), report;
    an interruption says what is kept."""
    from xreid.workflows.loading import head_name

    one_source(images, list_file, "FILE.csv")
    embedder = opts.load()
    attr_head = load_head(opts.model, head)
    try:
        report = job(embedder, attr_head, resolve_data_root(data_root), case, images=images, list_file=list_file,
                     head_name=head_name(opts.model, head), batch_size=batch_size)
    except OSError as exc:  # a full disk or read-only folder outside the index's own files
        fail(f"{exc.filename or case}: {exc.strerror or exc}; what was committed is intact: run the same command "
             f"again once it is fixed")
    except KeyboardInterrupt:
        fail(f"interrupted; {interrupted}", code=130)
    typer.echo(f"{report.case}: {report.count} images indexed ({report.added} added"
               + (f", {report.already} already there" if report.already else "") + ")"
               + (f"; ANN {report.ann['spec']}, nprobe {report.ann['nprobe']} of {report.ann['nlist']} lists"
                  if report.ann else "; exact search"))
    list_skipped(report.skipped, "image(s)")


@command(index_app, "export")
def index_export(
    case: CaseArg,
    out: Annotated[Optional[Path], typer.Option(
        help="Output .npz in `xreid embed`'s format (with the model identity).")] = None,
    mot: Annotated[Optional[Path], typer.Option(
        help="Folder for each indexed video's sightings in the MOTChallenge format (VIDEO_ID.txt).")] = None,
) -> None:
    """Write the index's embeddings as an .npz, as `xreid embed` writes them, and/or (--mot) the
    tracks of indexed footage as MOTChallenge text files."""
    from xreid.workflows.index import export_index

    if out is None and mot is None:
        fail("give --out FILE.npz and/or --mot DIR")
    if out is not None:
        outputs(out)
        typer.echo(f"{export_index(case, out)} embeddings written to {out}")
    if mot is not None:
        from xreid.workflows.footage import export_mot

        files = export_mot(case, mot)
        if not files:
            fail(f"{case}: holds no indexed footage (build it with `xreid index build --video ...`)")
        typer.echo(f"{len(files)} MOTChallenge file(s) written to {mot}")


@command(index_app, "timeline")
def index_timeline(
    case: CaseArg,
    out: Annotated[Path, typer.Option(help="Output file: .html (page), .json (data) or .png (for printing).")],
    items: Annotated[Optional[str], typer.Option(help="Only these rows, e.g. '3,7,12' (default: every sighting).")] = None,
) -> None:
    """The timeline of the case's sightings: one lane per camera, one bar per sighting."""
    from xreid.workflows.footage import export_timeline

    outputs(out)
    try:
        ids = [int(v) for v in items.split(",") if v.strip()] if items else None
        data = export_timeline(case, out, ids)
    except IndexError as exc:
        fail(str(exc))
    typer.echo(f"timeline of {len(data['items'])} sighting(s) on {len(data['lanes'])} camera(s) written to {out}")


@command(index_app, "check")
def index_check(
    case: CaseArg,
    repair: Annotated[bool, typer.Option(
        "--repair", help="Drop what is damaged: a segment's rows (ids kept; index their images again with "
                         "`xreid index add`), a thumbnail pack, the ANN file (built again), a video's footage "
                         "files (`xreid index add CASE --video PATH` makes them again). Damaged files are "
                         "moved to CASE/damaged/.")] = False,
) -> None:
    """Verify every file of an index against the sizes and SHA-256 its manifest recorded, its footage
    files (crops, key frames, chunks, tracks) and, for a sharded case, every shard; exit 1 when
    something is damaged and not repaired."""
    from xreid.workflows.index import check_index

    report, done = check_index(case, repair)
    for line in report.problems(case):
        typer.echo(f"damaged: {line}")
    for line in done:
        typer.echo(line)
    typer.echo(f"{case}: {report.verified} file(s) checked"
               + (f" ({report.unchecked} without a recorded checksum: structure checked only)" if report.unchecked
                  else "")
               + (f"; {report.dropped_rows} row(s) dropped by an earlier repair" if report.dropped_rows else "")
               + ("; intact" if report.clean else "; repaired" if done else "; damaged (run again with --repair)"))
    if not report.clean and not done:
        raise typer.Exit(1)


@command(index_app, "calibrate", models=True)
def index_calibrate(
    opts: ModelOptions,
    case: CaseArg,
    protocol: Annotated[str, typer.Option(help="Protocol whose train split calibrates: 'peta-reid-val' or a JSON path.")]
    = "peta-reid-val",
    data_root: DataRoot = None,
    threshold: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="Default open-set threshold: results below this probability are flagged "
                               "'probably not the person'.")] = 0.5,
) -> None:
    """Fit the same-person probability of the index's model (results' distances -> calibrated P(same
    person)) on a protocol's training crops and store it with the index (match_calibration.json)."""
    from xreid.workflows.match_calibration import CALIBRATION_FILE, calibrate_index

    embedder = opts.load()
    try:
        cal = calibrate_index(embedder, case, resolve_data_root(data_root), protocol, threshold=threshold)
    except KeyboardInterrupt:
        fail("interrupted; the training crops embedded so far are kept in the index folder: run the same "
             "command to resume", code=130)
    m = cal.meta
    typer.echo(f"{case / CALIBRATION_FILE}: same-person probability fitted on {m['searches']} simulated searches of "
               f"{m['protocol']} train ({m['pairs']} top-{cal.context} pairs, {m['true_matches']} true matches, "
               f"rank-1 {100 * m['rank1']:.1f} %); threshold {cal.threshold:g}")


@command(index_app, "search", models=True)
def index_search(
    opts: ModelOptions,
    case: CaseArg,
    query: Annotated[Optional[Path], typer.Option(help="Query image.")] = None,
    query_camera: Annotated[Optional[str], typer.Option(
        help="The camera the query image comes from, when the model embeds that camera's crops in its own way "
             "(per-camera statistics or means, `xreid adapt`); left out, it is a crop of unknown camera.")] = None,
    describe: Annotated[Optional[str], typer.Option(
        help="A description in words, e.g. 'woman, red top, backpack, no hat': alone it ranks the index by how well "
             "each image fits; with --query it re-ranks the image search.")] = None,
    filter_text: Annotated[Optional[str], typer.Option(
        "--filter", help="Conditions, e.g. 'carryingBackpack=yes,personalMale=no,site=north' (attributes take "
                         "yes/no: calibrated probability >= 0.5 or < 0.5, raw where the head had no calibration; as "
                         "`xreid explain` and the server; fields take a value).")] = None,
    camera: Annotated[Optional[list[str]], typer.Option(help="Camera (repeat for several); '3' also matches 'market/3'.")] = None,
    after: Annotated[Optional[str], typer.Option(help="Only images taken at or after this time (ISO 8601 or seconds).")] = None,
    before: Annotated[Optional[str], typer.Option(help="Only images taken before this time (ISO 8601 or seconds).")] = None,
    top_k: Annotated[int, typer.Option(min=1, help="Results to print.")] = 10,
    exact: Annotated[bool, typer.Option(help="Exact search (no ANN).")] = False,
    head: HeadOpt = None,
    json_out: Annotated[Optional[Path], typer.Option(
        "--json", help="Also write the ranked results (ids, keys, scores, per-attribute evidence) to this JSON file.")]
    = None,
    ray: RayShardsOpt = None,
) -> None:
    """Search an index for a query image, a description, or both (prints the top results)."""
    from xreid.io import write_json
    from xreid.workflows.describe import image_json
    from xreid.workflows.index import open_case, search_filter, search_index

    if query is None and describe is None:
        fail("give a query image (--query), a description (--describe), or both")
    if query_camera and query is None:
        fail("--query-camera is the camera of the --query image; give --query")
    outputs(json_out)
    index = open_case(case, ray=ray)
    where = search_filter(index, filter_text, camera, after, before)  # bad conditions fail before the model loads
    if describe is not None:
        _describe_search(opts, index, query, describe, where, top_k, exact, head, json_out, query_camera)
        return
    result = search_index(_query_embedder(opts, query_camera), index, query, where, top_k, exact=exact)
    if index.damaged:
        typer.echo(f"warning: {len(index.damaged)} damaged segment(s) left out ({', '.join(index.damaged)}); "
                   f"run `xreid index check {case} --repair`", err=True)
    typer.echo(f"{len(index)} images, {result.candidates} pass the filter; {result.method} search")
    for rank, (d, row) in enumerate(zip(result.distances, result.rows), 1):
        extra = ", ".join(f"{k}={v}" for k, v in row.items()
                          if k not in ("id", "path", "attributes") and v not in (None, ""))
        typer.echo(f"  {rank:>2}. id {row['id']}  d={d:.4f}  {row['path']}" + (f"  ({extra})" if extra else ""))
    if not result.rows:
        typer.echo("  no image passes the filter")
    if json_out is not None:
        write_json(json_out, image_json(str(query), result, index))
        typer.echo(f"results written to {json_out}")


def _query_embedder(opts: ModelOptions, camera: str | None):
    """The model of the options, as it embeds crops of ``camera`` (None: of unknown camera)."""
    from xreid.models.embedders import camera_variant

    try:
        return camera_variant(opts.load(), camera)
    except ValueError as exc:
        fail(f"--query-camera: {exc}")


def _describe_search(opts: ModelOptions, index, query: Path | None, text: str, where, top_k: int, exact: bool,
                     head: Path | None, json_out: Path | None, query_camera: str | None = None) -> None:
    """`xreid index search --describe`: alone, or joined to the image search of --query."""
    from xreid.io import write_json
    from xreid.rendering.description import reason_line
    from xreid.workflows.describe import describe_case, description_json, image_json

    attr_head = load_head(opts.model, head)
    d, res = describe_case(index, text, attr_head, top_k, where,
                           embedder=None if query is None else _query_embedder(opts, query_camera),
                           query=query, exact=exact)
    typer.echo("described: " + ", ".join(t.text for t in d.terms))
    for p in d.problems:
        typer.echo(f"  note: {p}")
    if query is None:
        weak = [t.text for t, w in zip(res.terms, res.weights) if w < 1]
        if weak:
            typer.echo(f"  unreliable for this model, weighted down: {', '.join(weak)}")
        typer.echo(f"{len(index)} images, {res.candidates} pass the filter; ranked by how well they fit ({res.rule}"
                   + (", each read with its look-alikes)" if res.lookalikes else ")"))
        lines = zip(res.ids, res.scores, res.evidence)
    else:
        typer.echo(f"image search re-ranked by the description ({res.mode})")
        lines = zip(res.ids, res.combined, res.evidence)
    for rank, (i, s, ev) in enumerate(lines, 1):
        typer.echo(f"  {rank:>2}. id {int(i)}  score={s:.4f}  {index.keys[int(i)]}\n      {reason_line(ev)}")
    if not len(res.ids):
        typer.echo("  no image passes the filter")
    if json_out is not None:
        write_json(json_out, description_json(d, res, index) if query is None else image_json(str(query), res, index, d))
        typer.echo(f"results written to {json_out}")


@command(None, models=True)
def serve(
    opts: ModelOptions,
    case: CaseArg,
    host: Annotated[str, typer.Option(help="Address to listen on; anything but the loopback needs a token.")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = 8000,
    token: Annotated[Optional[str], typer.Option(
        envvar="XREID_TOKEN", help="Every request must carry it (required beyond the loopback; $XREID_TOKEN).")] = None,
    head: HeadOpt = None,
    data_root: DataRoot = None,
    workdir: Annotated[Optional[Path], typer.Option(
        help="Where uploads and the audit log go (default: CASE/serve).")] = None,
    threshold: Annotated[Optional[float], typer.Option(
        min=0.0, max=1.0, help="Open-set threshold: results below this same-person probability are flagged "
                               "(default: the calibration's).")] = None,
    max_upload_mb: Annotated[float, typer.Option(min=0.01, help="Largest upload accepted, in MB.")] = 10.0,
    max_pixels: Annotated[int, typer.Option(min=1, help="Largest upload accepted, in pixels.")] = 40_000_000,
    ray: RayShardsOpt = None,
) -> None:
    """Serve a case (its gallery index): REST API (/docs) and a search page for analysts, offline, at http://HOST:PORT/."""
    from xreid.serve.app import check_bind, serve as run_server
    from xreid.serve.case import CaseSession, Limits
    from xreid.serve.memory import ARENAS, limit_arenas

    limit_arenas(ARENAS)  # before the model loads and its threads make heaps of their own
    check_bind(host, token)
    embedder = opts.load()
    session = CaseSession.open(case, embedder, load_head(opts.model, head), resolve_data_root(data_root),
                               workdir=workdir, threshold=threshold, model=opts.model,
                               limits=Limits(max_upload_bytes=int(max_upload_mb * 2**20), max_pixels=max_pixels),
                               ray=ray)
    if session.calibration is None:
        typer.echo(f"note: {case} has no same-person calibration (run `xreid index calibrate {case}` with the same "
                   f"model options); results are shown without a probability")
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
    typer.echo(f"serving {case} ({len(session.index):,} images) at {url}"
               + (f"?token=... (open it once with the token)" if token else "")
               + f"; API: {url}docs; audit log: {session.audit.path}")
    try:
        run_server(session, host, port, token)
    finally:
        session.close()


