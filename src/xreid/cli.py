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


def fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _embedder(model: str, height=None, width=None, channel_order=None, scale=None):
    from xreid.models.embedders import load_embedder

    if channel_order not in (None, "rgb", "bgr"):
        fail(f"--channel-order must be 'rgb' or 'bgr', not {channel_order!r}")
    try:
        return load_embedder(model, height=height, width=width, channel_order=channel_order, scale=scale)
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
    from xreid.training.config import load_config
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
) -> None:
    """Evaluate a model: CMC rank-1/5/10/20, mAP and mINP per test set and their mean."""
    from xreid.data.protocol import load_protocol
    from xreid.evaluation.evaluate import evaluate_protocol, format_result
    from xreid.io import write_json

    embedder = _embedder(model, height, width, channel_order, scale)
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
    embedder = _embedder(model, height, width, channel_order, scale)
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


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("xreid.data.peta",):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    app()


if __name__ == "__main__":
    main()
