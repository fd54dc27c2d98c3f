"""The ``xreid`` command line: data preparation, training, evaluation, embedding, export."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from xreid.paths import resolve_data_root

app = typer.Typer(help="xreid: explainable person re-identification.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
data_app = typer.Typer(help="Prepare datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
attr_app = typer.Typer(help="Fit and evaluate the attribute layer on a model's embeddings.", no_args_is_help=True)
app.add_typer(attr_app, name="attributes")

DataRoot = Annotated[Optional[Path], typer.Option(
    "--data-root", help="Dataset folder (default: $XREID_DATA_ROOT, else ~/.cache/xreid).")]
ModelOpt = Annotated[str, typer.Option(
    "--model", help="'default' (bundled), a .pt checkpoint, a .onnx file or an OpenVINO .xml file.")]
Height = Annotated[Optional[int], typer.Option(help="Black-box models: input height (default: the model's).")]
Width = Annotated[Optional[int], typer.Option(help="Black-box models: input width (default: the model's).")]
ChannelOrder = Annotated[Optional[str], typer.Option(
    "--channel-order", help="Black-box models: 'rgb' or 'bgr' (default: sidecar JSON, else bgr as in Open Model Zoo).")]
Scale = Annotated[Optional[float], typer.Option(
    help="Black-box models: multiply 0-255 pixels by this (default: sidecar, else 1.0 = raw 0-255).")]
Flip = Annotated[bool, typer.Option(
    "--flip", help="Average each crop's embedding with its mirror image's (test-time augmentation; 2x the compute).")]


def fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _embedder(model: str, height=None, width=None, channel_order=None, scale=None, flip: bool = False):
    from xreid.models.embedders import load_embedder

    if channel_order not in (None, "rgb", "bgr"):
        fail(f"--channel-order must be 'rgb' or 'bgr', not {channel_order!r}")
    try:
        return load_embedder(model, flip_average=flip, height=height, width=width, channel_order=channel_order,
                             scale=scale)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))


@data_app.command("prepare")
def data_prepare(
    dataset: Annotated[str, typer.Argument(help="Dataset name: 'peta'.")],
    source: Annotated[Path, typer.Option(help="PETA archive (.tar.zst/.tar.gz/...) or extracted folder.")],
    data_root: DataRoot = None,
) -> None:
    """Extract / link a dataset into the data root and check its labels."""
    from xreid.data.peta import LoadReport, load_peta, prepare_peta

    if dataset.lower() != "peta":
        fail(f"unknown dataset {dataset!r}; supported: peta (Market-1501 and plain folders need no preparation)")
    root = resolve_data_root(data_root)
    try:
        folder = prepare_peta(source, root)
        report = LoadReport()
        records = load_peta(folder, report=report)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    ids = {r.pid for r in records if r.pid}
    typer.echo(f"PETA ready at {folder}: {len(records)} images, {len(ids)} identities")
    if report.problems:
        typer.echo(f"{len(report.problems)} problem(s) found (images without labels are kept unlabelled):")
        for p in report.problems:
            typer.echo(f"  - {p}")
    protocol = folder.parent / "peta_reid_protocol.json"
    typer.echo(f"PETA-ReID protocol: {protocol if protocol.is_file() else 'not found beside the source'}")


@app.command()
def train(
    config: Annotated[Path, typer.Option(help="YAML training config, e.g. configs/peta_mobilenetv2.yaml.")],
    resume: Annotated[bool, typer.Option(help="Continue the run's last checkpoint.")] = False,
    data_root: DataRoot = None,
    max_batches: Annotated[Optional[int], typer.Option(help="Stop after this many batches (smoke test).")] = None,
) -> None:
    """Train a re-id model; checkpoints atomically and resumes after interruption."""
    import signal

    from xreid.training.config import load_config

    def stop(signum, frame):  # SIGTERM (kill, job schedulers) saves progress like Ctrl-C does
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    from xreid.training.trainer import train as run_training

    try:
        cfg = load_config(config)
        out = run_training(cfg, resolve_data_root(data_root), resume=resume, max_batches=max_batches)
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        fail(str(exc))
    except KeyboardInterrupt as exc:
        fail(str(exc) or "interrupted", code=130)
    typer.echo(f"model written to {out}")


@app.command("eval")
def evaluate(
    model: ModelOpt = "default",
    protocol: Annotated[str, typer.Option(help="'peta-reid' (found in the data root) or a protocol JSON path.")] = "peta-reid",
    data_root: DataRoot = None,
    rerank: Annotated[bool, typer.Option(help="k-reciprocal re-ranking (k1=20, k2=6, lambda=0.3).")] = False,
    query_expansion: Annotated[bool, typer.Option(help="Average query expansion (top-5 / top-10).")] = False,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write all figures to this JSON file.")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 64,
    height: Height = None, width: Width = None, channel_order: ChannelOrder = None, scale: Scale = None,
    flip: Flip = False,
) -> None:
    """Evaluate a model: CMC rank-1/5/10/20, mAP and mINP per test set and their mean."""
    from xreid.data.protocol import load_protocol
    from xreid.evaluation.evaluate import evaluate_protocol, format_result
    from xreid.io import write_json

    embedder = _embedder(model, height, width, channel_order, scale, flip)
    try:
        proto = load_protocol(protocol, resolve_data_root(data_root))
        result = evaluate_protocol(embedder, proto, rerank=rerank, query_expansion=query_expansion,
                                   batch_size=batch_size)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    typer.echo(f"{result.model} on {result.protocol} ({result.images_embedded} images, "
               f"{result.images_embedded / max(result.embed_seconds, 1e-9):.0f} img/s incl. decoding)")
    typer.echo(format_result(result))
    if result.skipped_images:
        typer.echo(f"skipped {len(result.skipped_images)} unreadable image(s):")
        for s in result.skipped_images:
            typer.echo(f"  - {s}")
    if json_out:
        write_json(json_out, result.to_dict())
        typer.echo(f"figures written to {json_out}")


@app.command()
def embed(
    out: Annotated[Path, typer.Option(help="Output .npz: one float32 vector per image, key = path relative to the data root.")],
    model: ModelOpt = "default",
    data_root: DataRoot = None,
    images: Annotated[Optional[Path], typer.Option(help="Folder of images (searched recursively).")] = None,
    list_file: Annotated[Optional[Path], typer.Option("--list", help="Text/CSV file of image paths relative to the data root.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from OUT.partial.npz if an earlier run was interrupted.")] = True,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 64,
    height: Height = None, width: Width = None, channel_order: ChannelOrder = None, scale: Scale = None,
    flip: Flip = False,
) -> None:
    """Embed images to an .npz file; unreadable images are skipped and listed."""
    from xreid.data.folder import load_folder, load_list
    from xreid.index.features import embed_to_file

    if (images is None) == (list_file is None):
        fail("give exactly one of --images DIR or --list FILE")
    root = resolve_data_root(data_root)
    try:
        if images is not None:
            folder = images if images.is_absolute() or images.is_dir() else root / images
            records = load_folder(folder, root=root)
        else:
            records = load_list(list_file)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    embedder = _embedder(model, height, width, channel_order, scale, flip)
    report = embed_to_file(embedder, root, [r.path for r in records], out, resume=resume, batch_size=batch_size)
    typer.echo(f"{report.embedded + report.reused} embeddings written to {report.out}"
               + (f" ({report.reused} reused from an interrupted run)" if report.reused else ""))
    if report.skipped:
        typer.echo(f"skipped {len(report.skipped)} image(s):")
        for s in report.skipped:
            typer.echo(f"  - {s}")
    if report.embedded + report.reused == 0:
        fail("no usable image", code=1)


@app.command()
def export(
    out: Annotated[Path, typer.Option(help="Output path (.onnx, or .xml for OpenVINO).")],
    model: ModelOpt = "default",
    fmt: Annotated[str, typer.Option("--format", help="'onnx' or 'openvino'.")] = "onnx",
) -> None:
    """Export an xreid model for fast inference and check it gives the same embeddings."""
    from xreid.models.export import export_model

    try:
        report = export_model(model, fmt, out)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    typer.echo(f"exported {report['format']} model to {report['path']}; "
               f"cosine to PyTorch embeddings: min {report['min_cosine']:.6f}")
    if report["min_cosine"] < 0.999:
        fail("exported model disagrees with the PyTorch model (cosine < 0.999)", code=1)


HeadOpt = Annotated[Optional[Path], typer.Option(
    "--head", help="Attribute head (.npz from `xreid attributes fit`); --model default has its own.")]


def _head(model: str, head: Path | None):
    from xreid.explain.attribute_head import AttributeHead
    from xreid.models.embedders import BUNDLED_HEAD

    if head is None:
        if model != "default":
            fail("this model needs --head HEAD.npz (fit one with `xreid attributes fit --model ...`)")
        head = BUNDLED_HEAD
    try:
        return AttributeHead.load(head)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))


@attr_app.command("fit")
def attributes_fit(
    out: Annotated[Path, typer.Option(help="Output attribute head (.npz).")],
    model: ModelOpt = "default",
    protocol: Annotated[str, typer.Option(help="'peta-reid' or a protocol JSON path (PETA attributes).")] = "peta-reid",
    data_root: DataRoot = None,
    market_root: Annotated[Optional[Path], typer.Option(help="Fit on Market-1501 instead: its root folder.")] = None,
    market_attributes: Annotated[Optional[Path], typer.Option(help="market_attribute.mat (with --market-root).")] = None,
    epochs: Annotated[int, typer.Option(help="Full-batch optimisation steps.")] = 300,
    height: Height = None, width: Width = None, channel_order: ChannelOrder = None, scale: Scale = None,
    flip: Flip = False,
) -> None:
    """Train the bias-free linear attribute layer on frozen embeddings (class-balanced BCE)."""
    from xreid.data.peta import EXPLANATION_ATTRIBUTES
    from xreid.explain.attribute_head import fit_attribute_head
    from xreid.explain.attribute_quality import labelled_embeddings

    embedder = _embedder(model, height, width, channel_order, scale, flip)
    try:
        if market_root is not None:
            from xreid.data.market import MARKET_ATTRIBUTES, load_market, load_market_attributes

            if market_attributes is None:
                fail("--market-root needs --market-attributes market_attribute.mat")
            labels = load_market_attributes(market_attributes)
            records, root, names = load_market(market_root, "bounding_box_train", labels), market_root, MARKET_ATTRIBUTES
            source = f"Market-1501 {market_root}"
        else:
            from xreid.data.protocol import load_protocol

            proto = load_protocol(protocol, resolve_data_root(data_root))
            records, root, names = proto.train + proto.attribute_only, proto.image_root, EXPLANATION_ATTRIBUTES
            source = f"{proto.name} train + attribute_only"
        feats, labels_m, kept = labelled_embeddings(embedder, root, records, names)
        head = fit_attribute_head(feats, labels_m, names, epochs=epochs,
                                  meta={"model": model, "source": source, "embedder": embedder.name})
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    head.save(out)
    typer.echo(f"attribute head ({len(names)} attributes, {head.embedding_dim}-d embeddings, "
               f"{len(kept)} images) written to {out}")
    if head.meta["never_positive_in_training"]:
        typer.echo(f"never positive in training (their probabilities carry no information): "
                   f"{', '.join(head.meta['never_positive_in_training'])}")


@attr_app.command("eval")
def attributes_eval(
    model: ModelOpt = "default",
    head: HeadOpt = None,
    protocol: Annotated[str, typer.Option(help="'peta-reid' or a protocol JSON path.")] = "peta-reid",
    data_root: DataRoot = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write all figures to this JSON file.")] = None,
    height: Height = None, width: Width = None, channel_order: ChannelOrder = None, scale: Scale = None,
    flip: Flip = False,
) -> None:
    """Attribute recognition on the protocol's test images: mA and per-attribute TPR / TNR / accuracy."""
    from xreid.data.protocol import load_protocol
    from xreid.explain.attribute_quality import attribute_report, labelled_embeddings
    from xreid.io import write_json

    embedder = _embedder(model, height, width, channel_order, scale, flip)
    attr_head = _head(model, head)
    try:
        proto = load_protocol(protocol, resolve_data_root(data_root))
        feats, labels, _ = labelled_embeddings(embedder, proto.image_root, proto.test_images(), attr_head.names)
        report = attribute_report(attr_head.predict(feats), labels, attr_head.names, proto.attributes or None)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    typer.echo(f"{'attribute':<24}{'mA':>7}{'TPR':>7}{'TNR':>7}{'acc':>7}{'pos':>6}")
    for name, r in report["per_attribute"].items():
        f = lambda v: f"{100 * v:7.1f}" if v is not None else "      -"  # noqa: E731
        typer.echo(f"{name:<24}{f(r['mA'])}{f(r['TPR'])}{f(r['TNR'])}{f(r['accuracy'])}{r['positives']:6d}")
    typer.echo(f"mA over {report['attributes']} attributes on {report['images']} test images: {report['mA']:.1f} %")
    if json_out:
        write_json(json_out, {"model": model, "head": str(head or "bundled"), **report})


@app.command()
def explain(
    out: Annotated[Path, typer.Option(help="Output HTML report (self-contained).")],
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Output JSON with every number shown.")] = None,
    model: ModelOpt = "default",
    head: HeadOpt = None,
    query: Annotated[Optional[Path], typer.Option(help="Query image.")] = None,
    gallery: Annotated[Optional[Path], typer.Option(
        help="Gallery: a folder of images, or an .npz from `xreid embed` (keys relative to --data-root).")] = None,
    protocol: Annotated[Optional[str], typer.Option(help="Instead of --query/--gallery: a protocol's test set.")] = None,
    test_set: Annotated[Optional[str], typer.Option(help="With --protocol: the test set (e.g. VIPeR).")] = None,
    query_index: Annotated[int, typer.Option(help="With --protocol: which query of the test set.")] = 0,
    query_id: Annotated[Optional[str], typer.Option(help="The query's person id, to mark true matches.")] = None,
    data_root: DataRoot = None,
    top_k: Annotated[int, typer.Option(help="Results to explain.")] = 10,
    threshold: Annotated[float, typer.Option(help="Confidence threshold t_a of eq. 3.1.")] = 0.3,
    filter_text: Annotated[Optional[str], typer.Option(
        "--filter", help="Attribute filter, e.g. 'personalMale=yes,carryingBackpack=no'.")] = None,
    filter_mode: Annotated[str, typer.Option(help="'rerank' (violators sink) or 'keep' (violators dropped).")] = "rerank",
    maps: Annotated[Optional[str], typer.Option(
        help="Visual maps: any of pair,attention,attributes (Grad-CAM; occlusion for ONNX/OpenVINO models).")] = None,
    map_dims: Annotated[int, typer.Option(help="Pair maps: embedding dims per pair.")] = 5,
    height: Height = None, width: Width = None, channel_order: ChannelOrder = None, scale: Scale = None,
    flip: Flip = False,
) -> None:
    """Rank a gallery for a query and explain the top results in attributes (HTML + JSON)."""
    from xreid.explain.pipeline import explain_query

    embedder = _embedder(model, height, width, channel_order, scale, flip)
    attr_head = _head(model, head)
    try:
        maps_for = None
        if maps:
            from xreid.explain.maps.compute import maps_for_report, parse_kinds

            maps_for = maps_for_report(embedder, attr_head, parse_kinds(maps), out.with_name(out.stem + "_maps"),
                                       k=map_dims)
        result = explain_query(embedder, attr_head, resolve_data_root(data_root), query=query, gallery=gallery,
                               protocol=protocol, test_set=test_set, query_index=query_index, query_id=query_id,
                               top_k=top_k, threshold=threshold, filter_text=filter_text, filter_mode=filter_mode,
                               out_html=out, out_json=json_out, model_name=model, maps_for=maps_for)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    e = result.explanation
    typer.echo(f"query {e.query}: confident attributes {', '.join(e.confident) or 'none'}")
    for r in e.results:
        mark = "" if r.is_match is None else (" (match)" if r.is_match else "")
        typer.echo(f"  {r.rank:>2}. {r.key}  d={r.distance:.4f}  explained {100 * r.explained_share:.0f} %{mark}")
    typer.echo(e.reliability)
    for s in result.skipped:
        typer.echo(f"skipped: {s}")
    typer.echo(f"report: {out}" + (f", data: {json_out}" if json_out else ""))


@app.command()
def analyze(
    out: Annotated[Path, typer.Option(help="Output folder (index.html, CSV, charts).")],
    model: ModelOpt = "default",
    head: HeadOpt = None,
    protocol: Annotated[str, typer.Option(help="'peta-reid' or a protocol JSON path: its test images are ranked.")] = "peta-reid",
    data_root: DataRoot = None,
    dims: Annotated[Optional[str], typer.Option(help="Comma-separated embedding dims to rank by (default: the 6 most attribute-specific).")] = None,
    height: Height = None, width: Width = None, channel_order: ChannelOrder = None, scale: Scale = None,
    flip: Flip = False,
) -> None:
    """Analyse the embedding: dims per attribute (Table 4.1) and images ranked by chosen dims (Fig. 4.1)."""
    from xreid.data.protocol import load_protocol
    from xreid.explain.analysis_report import write_analysis
    from xreid.explain.embedding_analysis import default_dims, dim_rank_lists, dims_table

    embedder = _embedder(model, height, width, channel_order, scale, flip)
    attr_head = _head(model, head)
    try:
        chosen = [int(d) for d in dims.split(",")] if dims else default_dims(attr_head)
        proto = load_protocol(protocol, resolve_data_root(data_root))
        images = proto.test_images()
        res = embedder.embed_paths([proto.image_root / r.path for r in images], progress=True)
        attr_head.check_embedding(res.features, f"{model} embeddings")
        keys = [images[i].path for i in res.kept]
        index = write_analysis(out, dims_table(attr_head), dim_rank_lists(attr_head, res.features, keys, chosen),
                               {k: proto.image_root / k for k in keys}, model)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    typer.echo(f"analysis written to {index}")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("xreid.data.peta",):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    app()


if __name__ == "__main__":
    main()
