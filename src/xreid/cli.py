"""The ``xreid`` command line: data preparation, training, evaluation, embedding, export."""

from __future__ import annotations

import functools
import inspect
import logging
import sys
from dataclasses import dataclass
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
HeadOpt = Annotated[Optional[Path], typer.Option(
    "--head", help="Attribute head (.npz from `xreid attributes fit`); --model default has its own.")]
FusionOpt = Annotated[Optional[Path], typer.Option(
    "--fusion", help="Rank by the fused distance of `xreid fuse fit` (model distance + weighted attributes).")]


@dataclass
class ModelOptions:
    """The options every command that embeds shares: which model, how its input is prepared."""

    model: str = "default"
    height: Optional[int] = None
    width: Optional[int] = None
    channel_order: Optional[str] = None
    scale: Optional[float] = None
    flip: bool = False
    precision: Optional[str] = None
    backend: str = "auto"

    def load(self):
        """The embedder; a bad option or model file ends the command with a message naming it."""
        from xreid.models.loading import load_embedder

        if self.channel_order not in (None, "rgb", "bgr"):
            fail(f"--channel-order must be 'rgb' or 'bgr', not {self.channel_order!r}")
        if self.precision not in (None, "f32", "bf16"):
            fail(f"--precision must be 'f32' or 'bf16', not {self.precision!r}")
        if self.backend not in ("auto", "torch", "onnx", "openvino"):
            fail(f"--backend must be auto, torch, onnx or openvino, not {self.backend!r}")
        for name, value in (("--height", self.height), ("--width", self.width), ("--scale", self.scale)):
            if value is not None and value <= 0:
                fail(f"{name} must be positive (got {value})")
        try:
            return load_embedder(self.model, flip_average=self.flip, backend=self.backend, precision=self.precision,
                                 height=self.height, width=self.width, channel_order=self.channel_order,
                                 scale=self.scale)
        except (FileNotFoundError, ValueError) as exc:
            fail(str(exc))


_MODEL_PARAMETERS = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
                     for name, default, annotation in [
    ("model", "default", Annotated[str, typer.Option(
        "--model", help="'default' (bundled), a .pt checkpoint, a .onnx file or an OpenVINO .xml file; several "
                        "separated by commas run as one model (each embedding L2-normalised, concatenated).")]),
    ("height", None, Annotated[Optional[int], typer.Option(help="Black-box models: input height (default: the model's).")]),
    ("width", None, Annotated[Optional[int], typer.Option(help="Black-box models: input width (default: the model's).")]),
    ("channel_order", None, Annotated[Optional[str], typer.Option(
        "--channel-order", help="Black-box models: 'rgb' or 'bgr' (default: sidecar JSON, else bgr as in Open Model Zoo).")]),
    ("scale", None, Annotated[Optional[float], typer.Option(
        help="Black-box models: multiply 0-255 pixels by this (default: sidecar, else 1.0 = raw 0-255).")]),
    ("flip", False, Annotated[bool, typer.Option(
        "--flip", help="Average each crop's embedding with its mirror image's (test-time augmentation; 2x the compute).")]),
    ("precision", None, Annotated[Optional[str], typer.Option(
        help="OpenVINO inference precision: f32 (default, exact) or bf16 (1.5-2x faster on CPUs with bf16; "
             "bundled model -0.4 mAP); bf16 selects OpenVINO under --backend auto.")]),
    ("backend", "auto", Annotated[str, typer.Option(
        help="What runs the model: auto (xreid models: a cached ONNX Runtime copy, PyTorch where gradients are "
             "needed; .onnx: ONNX Runtime; .xml: OpenVINO; $XREID_BACKEND overrides), torch, onnx, openvino.")]),
]]


def model_options(command):
    """Give ``command`` the shared model options, collected into its ``opts: ModelOptions`` argument."""
    signature = inspect.signature(command, eval_str=True)  # typer reads the annotations as objects
    own = [p for p in signature.parameters.values() if p.name != "opts"]

    @functools.wraps(command)
    def wrapper(**kwargs):
        opts = ModelOptions(**{p.name: kwargs.pop(p.name) for p in _MODEL_PARAMETERS})
        return command(opts=opts, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=own + _MODEL_PARAMETERS)
    return wrapper


def fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _head(model: str, head: Path | None):
    from xreid.explain.attribute_head import AttributeHead
    from xreid.models.loading import BUNDLED_HEAD, model_head_path

    if head is None:  # the model's own head: the bundled one, or the one a multi-task run wrote beside it
        own = BUNDLED_HEAD if model == "default" else model_head_path(model)
        if not own.is_file():
            fail("this model needs --head HEAD.npz (fit one with `xreid attributes fit --model ...`)")
        head = own
    try:
        return AttributeHead.load(head)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))


def _outputs(*files: Optional[Path], folders: tuple[Optional[Path], ...] = ()) -> None:
    """Check every output can be written before any work starts."""
    from xreid.workflows.outputs import check_writable

    try:
        check_writable(*files, folders=folders)
    except ValueError as exc:
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
    set_: Annotated[Optional[list[str]], typer.Option(
        "--set", help="Override a config value, KEY.PATH=VALUE (repeatable), e.g. --set train.epochs=12; "
                      "a resumed run needs the same overrides.")] = None,
    cache: Annotated[Optional[Path], typer.Option(help="Embedding cache folder for an ACRN run's attribute "
                                                       "classifier (default: DATA_ROOT/embeddings).")] = None,
) -> None:
    """Train a re-id model; checkpoints atomically and resumes after interruption."""
    import signal

    from xreid.training.config import load_config

    def stop(signum, frame):  # SIGTERM (kill, job schedulers) saves progress like Ctrl-C does
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    from xreid.training.trainer import check_new_run
    from xreid.training.trainer import train as run_training

    from xreid.workflows.acrn import finish_acrn, prepare_acrn

    root = resolve_data_root(data_root)
    cache = cache or root / "embeddings"
    try:
        cfg = load_config(config, set_)
        check_new_run(cfg, resume)  # before any slow preparation
        prepare_acrn(cfg, root, cache)
        out = run_training(cfg, root, resume=resume, max_batches=max_batches)
        acrn = finish_acrn(cfg, out, root, cache) if out.name == "model.pt" else None  # not after --max-batches
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        fail(str(exc))
    except KeyboardInterrupt as exc:
        fail(str(exc) or "interrupted", code=130)
    typer.echo(f"model written to {out}")
    if acrn is not None:
        path, scores = acrn
        typer.echo(f"ACRN fusion (learnt attribute weights + mixing) written to {path}"
                   + (": validation mean mAP by mixing " + ", ".join(f"{m:g}: {v:.1f}" for m, v in scores.items())
                      if scores else "") + f"; rank with --fusion {path}")
    from xreid.models.loading import model_head_path

    if model_head_path(out).is_file():  # a multi-task run: its trained attribute layer
        from xreid.explain.attribute_head import AttributeHead

        head = AttributeHead.load(model_head_path(out))
        held = head.meta.get("held_out_mA")
        typer.echo(f"attribute head ({len(head.names)} attributes) written to {model_head_path(out)}"
                   + (f"; mA on {head.meta['calibration_images']} held-out images: {held:.1f} %" if held else ""))
        if head.meta["never_positive_in_training"]:
            never = ", ".join(head.meta["never_positive_in_training"])
            typer.echo(f"never positive in training (left out of mA): {never}")


@app.command()
def adapt(
    source: Annotated[Path, typer.Argument(
        metavar="CASE_OR_IMAGES", help="Unlabeled crops of your cameras: a case (index folder; its 'track' column, "
                                       "if any, gives positives), a folder of images, or a CSV list "
                                       "(path[,camera][,track]).")],
    out: Annotated[Path, typer.Option(help="The adapted model file (.pt).")],
    model: Annotated[str, typer.Option(help="The xreid model to start from ('default' or a .pt).")] = "default",
    teacher: Annotated[Optional[str], typer.Option(
        help="Distil from this model on the crops (e.g. an Open Model Zoo .xml of the same embedding size).")] = None,
    teacher_precision: Annotated[Optional[str], typer.Option(help="The teacher's OpenVINO precision: f32 or bf16.")] = None,
    rounds: Annotated[int, typer.Option(min=1, help="Cluster-then-train rounds.")] = 8,
    batches: Annotated[int, typer.Option(min=1, help="Training batches per round.")] = 50,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 3.5e-5,
    eps: Annotated[float, typer.Option(help="Clustering radius (Jaccard distance): larger merges more crops.")] = 0.6,
    min_samples: Annotated[int, typer.Option(min=2, help="Crops that make a cluster.")] = 4,
    distance: Annotated[str, typer.Option(help="What the clustering reads: 'jaccard' (k-reciprocal) or 'cosine'.")
                        ] = "jaccard",
    k2: Annotated[int, typer.Option(min=1, help="Neighbours the k-reciprocal sets are averaged over.")] = 6,
    k1: Annotated[int, typer.Option(min=1, help="k-reciprocal neighbours of the clustering distance (below the "
                                                 "crops per person).")] = 20,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted adaptation to the same --out.")] = False,
    data_root: DataRoot = None,
    max_batches: Annotated[Optional[int], typer.Option(help="Stop after this many batches (smoke test).")] = None,
) -> None:
    """Fine-tune a model on the unlabeled crops of your cameras: pseudo-identities by clustering, positives
    from tracks, optional distillation; checkpoints atomically and resumes after interruption."""
    import signal

    from xreid.training.adapt import AdaptConfig
    from xreid.workflows.adapt import adapt as run_adapt

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    cfg = AdaptConfig(rounds=rounds, batches=batches, lr=lr, eps=eps, min_samples=min_samples, k1=k1, k2=k2,
                      distance=distance, teacher=teacher,
                      teacher_precision=teacher_precision)
    try:
        report = run_adapt(model, source, out, cfg, data_root=resolve_data_root(data_root), resume=resume, max_batches=max_batches)
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        fail(str(exc))
    except KeyboardInterrupt as exc:
        fail(str(exc) or "interrupted", code=130)
    _list_skipped(report.skipped, "image(s)")
    if not report.finished:
        typer.echo(f"stopped after --max-batches; progress in {report.out} (continue with --resume)")
        return
    last = report.history[-1] if report.history else {}
    typer.echo(f"adapted model written to {report.out} ({report.images} crops"
               + (f", {report.tracks} tracks" if report.tracks else "")
               + (f"; last round: {last['clusters']} pseudo-identities holding {last['clustered']} crops" if last else "")
               + "); its embedding changed: fit its attribute head with `xreid attributes fit --model "
               + f"{report.out} --out HEAD.npz` before explaining with it")


@app.command("eval")
@model_options
def evaluate(
    opts: ModelOptions,
    protocol: Annotated[str, typer.Option(help="'peta-reid' (found in the data root) or a protocol JSON path.")] = "peta-reid",
    data_root: DataRoot = None,
    rerank: Annotated[bool, typer.Option(help="k-reciprocal re-ranking (k1=20, k2=6, lambda=0.3).")] = False,
    query_expansion: Annotated[bool, typer.Option(help="Average query expansion (top-5 / top-10).")] = False,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write all figures to this JSON file.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = 64,
    fusion: FusionOpt = None,
) -> None:
    """Evaluate a model: CMC rank-1/5/10/20, mAP and mINP per test set and their mean."""
    from xreid.data.protocol import load_protocol
    from xreid.evaluation.evaluate import evaluate_protocol, format_result
    from xreid.io import write_json

    _outputs(json_out)
    if fusion is not None and (rerank or query_expansion):
        fail("--fusion ranks by the fused distance: it cannot be combined with --rerank or --query-expansion")
    embedder = opts.load()
    fused, attr_embedder = _fusion(fusion, embedder)
    try:
        proto = load_protocol(protocol, resolve_data_root(data_root))
        if fused is not None:
            from xreid.workflows.fuse import evaluate_fused

            result = evaluate_fused(embedder, attr_embedder, fused, proto, batch_size=batch_size)
        else:
            result = evaluate_protocol(embedder, proto, rerank=rerank, query_expansion=query_expansion,
                                       batch_size=batch_size)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    typer.echo(f"{result.model} on {result.protocol} ({result.images_embedded} images, "
               f"{result.images_embedded / max(result.embed_seconds, 1e-9):.0f} img/s incl. decoding)")
    typer.echo(format_result(result))
    _list_skipped(result.skipped_images, "unreadable image(s)")
    if json_out:
        write_json(json_out, result.to_dict())
        typer.echo(f"figures written to {json_out}")


def _list_skipped(skipped: list[str], what: str = "file(s)") -> None:
    if skipped:
        typer.echo(f"skipped {len(skipped)} {what}:")
        for s in skipped:
            typer.echo(f"  - {s}")


@app.command()
@model_options
def embed(
    opts: ModelOptions,
    out: Annotated[Path, typer.Option(help="Output .npz: one float32 vector per image, key = path relative to the data root.")],
    data_root: DataRoot = None,
    images: Annotated[Optional[Path], typer.Option(help="Folder of images (searched recursively).")] = None,
    list_file: Annotated[Optional[Path], typer.Option("--list", help="CSV with a header row naming its columns: 'path' (relative to the data root, "
                                                                  "no '..') required; read by name.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from OUT.partial.npz if an earlier run was interrupted.")] = True,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = 64,
) -> None:
    """Embed images to an .npz file; unreadable images are skipped and listed. Interrupted runs resume."""
    from xreid.workflows.embed import embed_images

    if (images is None) == (list_file is None):
        fail("give exactly one of --images DIR or --list FILE")
    _outputs(out)
    embedder = opts.load()
    try:
        report = embed_images(embedder, resolve_data_root(data_root), out, images=images, list_file=list_file,
                              resume=resume, batch_size=batch_size)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    except KeyboardInterrupt as exc:
        fail(str(exc) or "interrupted", code=130)
    typer.echo(f"{report.embedded + report.reused} embeddings written to {report.out}"
               + (f" ({report.reused} reused from an interrupted run)" if report.reused else ""))
    _list_skipped(report.skipped, "image(s)")
    if report.embedded + report.reused == 0:
        fail("no usable image", code=1)


@app.command()
def export(
    out: Annotated[Path, typer.Option(help="Output path (.onnx, or .xml for OpenVINO).")],
    model: Annotated[str, typer.Option("--model", help="'default' (bundled) or a .pt checkpoint from `xreid train`.")] = "default",
    fmt: Annotated[str, typer.Option("--format", help="'onnx' or 'openvino'.")] = "onnx",
) -> None:
    """Export an xreid model for fast inference and check it gives the same embeddings."""
    from xreid.workflows.export import export_model

    _outputs(out)
    try:
        report = export_model(model, fmt, out)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    typer.echo(f"exported {report['format']} model to {report['path']}; "
               f"cosine to PyTorch embeddings: min {report['min_cosine']:.6f}")
    if report["min_cosine"] < 0.999:
        fail("exported model disagrees with the PyTorch model (cosine < 0.999)", code=1)


@attr_app.command("fit")
@model_options
def attributes_fit(
    opts: ModelOptions,
    out: Annotated[Path, typer.Option(help="Output attribute head (.npz).")],
    protocol: Annotated[str, typer.Option(help="'peta-reid' or a protocol JSON path (PETA attributes).")] = "peta-reid",
    data_root: DataRoot = None,
    market_root: Annotated[Optional[Path], typer.Option(help="Fit on Market-1501 instead: its root folder.")] = None,
    market_attributes: Annotated[Optional[Path], typer.Option(help="market_attribute.mat (with --market-root).")] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Full-batch optimisation steps.")] = 300,
) -> None:
    """Train the bias-free linear attribute layer on frozen embeddings (class-balanced BCE)."""
    from xreid.workflows.attributes import fit_head

    _outputs(out)
    embedder = opts.load()
    try:
        head = fit_head(embedder, resolve_data_root(data_root), protocol, market_root, market_attributes,
                        epochs=epochs, model_name=opts.model)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    head.save(out)
    typer.echo(f"attribute head ({len(head.names)} attributes, {head.embedding_dim}-d embeddings, "
               f"{head.meta['train_images']} images) written to {out}")
    if head.meta["never_positive_in_training"]:
        typer.echo(f"never positive in training (their probabilities carry no information): "
                   f"{', '.join(head.meta['never_positive_in_training'])}")


@attr_app.command("eval")
@model_options
def attributes_eval(
    opts: ModelOptions,
    head: HeadOpt = None,
    protocol: Annotated[str, typer.Option(help="'peta-reid' or a protocol JSON path.")] = "peta-reid",
    data_root: DataRoot = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write all figures to this JSON file.")] = None,
) -> None:
    """Attribute recognition on the protocol's test images: mA and per-attribute TPR / TNR / accuracy."""
    from xreid.io import write_json
    from xreid.workflows.attributes import evaluate_head

    _outputs(json_out)
    embedder = opts.load()
    attr_head = _head(opts.model, head)
    try:
        report = evaluate_head(embedder, attr_head, resolve_data_root(data_root), protocol)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    typer.echo(f"{'attribute':<24}{'mA':>7}{'TPR':>7}{'TNR':>7}{'acc':>7}{'pos':>6}")
    for name, r in report["per_attribute"].items():
        f = lambda v: f"{100 * v:7.1f}" if v is not None else "      -"  # noqa: E731
        typer.echo(f"{name:<24}{f(r['mA'])}{f(r['TPR'])}{f(r['TNR'])}{f(r['accuracy'])}{r['positives']:6d}")
    typer.echo(f"mA over {report['attributes']} attributes on {report['images']} test images: {report['mA']:.1f} %")
    if json_out:
        write_json(json_out, {"model": opts.model, "head": str(head or "bundled"), **report})


@app.command()
@model_options
def explain(
    opts: ModelOptions,
    out: Annotated[Path, typer.Option(help="Output HTML report (self-contained).")],
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Output JSON with every number shown.")] = None,
    head: HeadOpt = None,
    query: Annotated[Optional[Path], typer.Option(help="Query image.")] = None,
    gallery: Annotated[Optional[Path], typer.Option(
        help="Gallery: a folder of images, a CSV list with a header row naming its columns ('path' relative to "
             "--data-root required; pid or person_id, camera or cam optional; read by name, in any order) "
             "or an .npz from `xreid embed`.")] = None,
    protocol: Annotated[Optional[str], typer.Option(help="Instead of --query/--gallery: a protocol's test set.")] = None,
    test_set: Annotated[Optional[str], typer.Option(help="With --protocol: the test set (e.g. VIPeR).")] = None,
    query_index: Annotated[int, typer.Option(help="With --protocol: which query of the test set.")] = 0,
    query_id: Annotated[Optional[str], typer.Option(help="The query's person id, to mark true matches.")] = None,
    data_root: DataRoot = None,
    top_k: Annotated[int, typer.Option(help="Results to explain (at least 1).")] = 10,
    threshold: Annotated[float, typer.Option(help="Confidence threshold t_a of the matching scores, in [0, 0.5).")] = 0.3,
    filter_text: Annotated[Optional[str], typer.Option(
        "--filter", help="Attribute filter, e.g. 'personalMale=yes,carryingBackpack=no': yes keeps images whose "
                         "attribute probability is >= 0.5, no those below (calibrated probabilities where the head "
                         "has a calibration, raw otherwise; as `xreid index search` and the server); 'pid=...' "
                         "or 'camera=...' take a value.")] = None,
    filter_mode: Annotated[str, typer.Option(help="'rerank' (violators sink) or 'keep' (violators dropped).")] = "rerank",
    maps: Annotated[Optional[str], typer.Option(
        help="Visual maps: any of pair,attention,attributes (Grad-CAM, xreid models) and occlusion (every model), "
             "or 'none'. Default: pair for xreid models, none for black-box models (occlusion takes seconds "
             "per result).")] = None,
    map_dims: Annotated[int, typer.Option(min=1, help="Pair maps: embedding dims per pair.")] = 5,
    interpreter: Annotated[Optional[Path], typer.Option(
        help="An interpreter of this model (`xreid interpret fit`): adds its per-attribute parts of each "
             "distance and its attention maps.")] = None,
    fusion: FusionOpt = None,
) -> None:
    """Rank a gallery for a query and explain the top results in attributes (HTML + JSON)."""
    from xreid.explain.maps.compute import parse_kinds
    from xreid.rendering.words import query_chips, result_line
    from xreid.workflows.explain import explain as run_explain
    from xreid.workflows.explain import maps_folder, write_report

    try:  # the other options are checked once, by the workflow, before any image is embedded
        if maps is None:
            kinds = ["pair"] if _is_xreid_model(opts.model) else []
        else:
            kinds = [] if maps.strip() == "none" else parse_kinds(maps)
    except ValueError as exc:
        fail(str(exc))
    _outputs(out, json_out, folders=(maps_folder(out) if kinds or interpreter else None,))
    interp = _interpreter(interpreter) if interpreter is not None else None
    embedder = opts.load()  # xreid models keep their PyTorch module at hand for Grad-CAM maps
    attr_head = _head(opts.model, head)
    fused, attr_embedder = _fusion(fusion, embedder)
    try:
        result = run_explain(embedder, attr_head, query, gallery, data_root=data_root, protocol=protocol,
                             test_set=test_set, query_index=query_index, query_id=query_id, top_k=top_k,
                             threshold=threshold, filter=filter_text, filter_mode=filter_mode, maps=kinds,
                             map_dims=map_dims, model_name=opts.model, interpreter=interp, fusion=fused,
                             attribute_embedder=attr_embedder)
        write_report(result, out, json_out)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    e = result.explanation
    chips = query_chips(e.attribute_names, e.query_calibrated, e.attribute_reliable)
    typer.echo(f"query {e.query}: {', '.join(c.text for c in chips if c.reliable) or 'no clear attribute'}")
    for r in e.results:
        mark = "" if r.is_match is None else (" (same person, known)" if r.is_match else " (different person, known)")
        typer.echo(f"  {r.rank:>2}. {r.key}  d={r.distance:.4f}  explained {100 * r.explained_share:.0f} %{mark}")
        if r.fused is not None:
            top = sorted(r.fused.attributes.items(), key=lambda kv: -kv[1])[:3]
            typer.echo(f"      fused: model {r.fused.model:.4f} + attributes {sum(r.fused.attributes.values()):.4f}"
                       + (f" ({', '.join(f'{n} {v:.4f}' for n, v in top)})" if top else ""))
        if r.summary is not None:
            typer.echo(f"      {result_line(r.summary, e.attribute_names, e.query_calibrated, r.calibrated)}")
    typer.echo(e.reliability)
    for note in result.notes:
        typer.echo(f"note: {note}")
    _list_skipped(result.skipped)
    typer.echo(f"report: {out}" + (f", data: {json_out}" if json_out else ""))


def _interpreter(path: Path):
    from xreid.models.interpreter import Interpreter

    try:
        return Interpreter.load(path)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))


interpret_app = typer.Typer(help="The distilled interpreter: per-attribute parts of any model's distances.",
                            no_args_is_help=True)
app.add_typer(interpret_app, name="interpret")


@interpret_app.command("fit")
@model_options
def interpret_fit(
    opts: ModelOptions,
    out: Annotated[Path, typer.Option(help="Output interpreter file.")],
    protocol: Annotated[str, typer.Option(help="'peta-reid', 'peta-reid-val' or a protocol JSON path.")] = "peta-reid",
    data_root: DataRoot = None,
    cache: Annotated[Optional[Path], typer.Option(
        help="Folder of cached inputs and the checkpoint (default: OUT.cache); run again to resume.")] = None,
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Epochs (default: the chosen setting).")] = None,
) -> None:
    """Fit an interpreter of the model's distances on the protocol's training crops (resumable)."""
    from dataclasses import replace

    from xreid.training.interpreter import FitConfig
    from xreid.workflows.interpret import fit as run_fit

    _outputs(out)
    embedder = opts.load()
    config = FitConfig() if epochs is None else replace(FitConfig(), epochs=epochs)
    try:
        interp = run_fit(embedder, resolve_data_root(data_root), out, protocol, config, cache, model_name=opts.model)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    typer.echo(f"interpreter of {opts.model} ({len(interp.names)} attributes, {interp.meta['train_images']} "
               f"training crops) written to {out}")
    if interp.absent:
        typer.echo(f"never positive in training (their parts carry no attribute meaning): {', '.join(interp.absent)}")


def _is_xreid_model(model: str) -> bool:
    """One xreid model (Grad-CAM needs its PyTorch module; a comma-separated list is a concatenation)."""
    return "," not in model and (model == "default" or Path(model).suffix in (".pt", ".pth"))


@app.command()
@model_options
def analyze(
    opts: ModelOptions,
    out: Annotated[Path, typer.Option(help="Output folder (index.html, CSV, charts).")],
    head: HeadOpt = None,
    protocol: Annotated[str, typer.Option(help="'peta-reid' or a protocol JSON path: its test images are ranked.")] = "peta-reid",
    data_root: DataRoot = None,
    dims: Annotated[Optional[str], typer.Option(help="Comma-separated embedding dims to rank by (default: the 6 most attribute-specific).")] = None,
) -> None:
    """Analyse the embedding: embedding dims per attribute, and images ranked by chosen dims."""
    from xreid.workflows.analyze import analyze as run_analyze
    from xreid.workflows.analyze import parse_dims

    attr_head = _head(opts.model, head)
    try:
        parse_dims(dims, attr_head)
    except ValueError as exc:
        fail(str(exc))
    _outputs(folders=(out,))
    embedder = opts.load()
    try:
        index = run_analyze(embedder, attr_head, protocol, resolve_data_root(data_root), out, dims)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    typer.echo(f"analysis written to {index}")


index_app = typer.Typer(help="A persistent gallery index: build it from images, add to it, export, search.",
                        no_args_is_help=True)
app.add_typer(index_app, name="index")
CaseArg = Annotated[Path, typer.Argument(help="The index folder (from `xreid index build --out`).")]


def _head_name(model: str, head: Path | None) -> str:
    return "bundled" if head is None and model == "default" else str(head)


VideoOpt = Annotated[Optional[Path], typer.Option(
    "--video", help="Footage: a video file, a folder of videos or of frame images, or a CSV (path, camera, start) "
                    "listing videos; each becomes sightings (detected, tracked people).")]
CameraOpt = Annotated[Optional[str], typer.Option(help="--video: camera name (default: CSV, else the file name).")]
StartOpt = Annotated[Optional[str], typer.Option(
    help="--video: start time, ISO 8601 (default: CSV, else the container's creation time, else unknown).")]
DetectorOpt = Annotated[str, typer.Option(
    help="--video: person detector, an SSD-output OpenVINO .xml / .onnx file or a short name from "
         "`xreid models get`.")]
StrideOpt = Annotated[int, typer.Option(min=1, help="--video: detect on every N-th frame.")]
ConfidenceOpt = Annotated[float, typer.Option(help="--video: detections at or above this go to the tracker.")]
FpsOpt = Annotated[Optional[float], typer.Option(help="--video on a folder of frame images: its frame rate (default 10).")]


@index_app.command("build")
@model_options
def index_build(
    opts: ModelOptions,
    out: Annotated[Path, typer.Option(help="Index folder to create (an interrupted build there is continued).")],
    images: Annotated[Optional[Path], typer.Option(help="Folder of images (searched recursively).")] = None,
    list_file: Annotated[Optional[Path], typer.Option(
        "--list", help="CSV with a header row (required): a 'path' column (relative to the data root; absolute "
                       "paths and '..' are refused), optional camera/cam, pid/person_id, "
                       "time/timestamp (ISO 8601 or seconds) and any other columns (kept as searchable fields).")] = None,
    video: VideoOpt = None,
    camera: CameraOpt = None,
    start: StartOpt = None,
    detector: DetectorOpt = "person-detection-retail-0013",
    stride: StrideOpt = 1,
    confidence: ConfidenceOpt = 0.1,
    fps: FpsOpt = None,
    head: HeadOpt = None,
    data_root: DataRoot = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per committed batch.")] = 256,
    shards: Annotated[int, typer.Option(min=1, help="Write the index as this many shards (searched in parallel "
                                                    "and merged; a row's shard is a hash of its path).")] = 1,
    ray: Annotated[Optional[str], typer.Option(
        "--ray", metavar="ADDRESS", help="Embed on a Ray cluster with Ray Data: its address (ray://... or "
                                         "HOST:PORT), 'auto' (the running one) or 'local' (start one here). "
                                         "Workers need xreid installed.")] = None,
    workers: Annotated[int, typer.Option(min=1, help="With --ray: model actors (one model each).")] = 2,
    gpus_per_worker: Annotated[float, typer.Option(min=0, help="With --ray: GPUs per actor (0: CPU).")] = 0.0,
) -> None:
    """Index images, or footage (--video: people detected, tracked and stored as sightings):
    embeddings, calibrated attribute probabilities, thumbnails and metadata, committed as they are
    done (rerun the same command to resume an interrupted build). --shards and --ray apply to
    images (footage runs in one process, unsharded)."""
    import functools

    from xreid.workflows.index import build_index

    _outputs(folders=(out,))
    if video is not None:
        if shards > 1 or ray is not None:
            fail("--shards and --ray index images; footage (--video) is indexed in one process, unsharded")
        _index_footage(opts, head, out, video, camera, start, detector, stride, confidence, fps, append=False)
        return
    ray_opts = None
    if ray is not None:
        ray_opts = {"make": functools.partial(_model_and_head, opts, head), "concurrency": workers,
                    "address": None if ray == "local" else ray, "num_gpus": gpus_per_worker}
    _index_images(functools.partial(build_index, shards=shards, ray=ray_opts), opts, head, data_root, out, images,
                  list_file, batch_size,
                  interrupted=f"every finished batch is committed in {out}: run the same command to resume")


def _model_and_head(opts: ModelOptions, head: Path | None):
    """The embedder and attribute head of the model options (what a Ray worker loads once)."""
    return opts.load(), _head(opts.model, head)


@index_app.command("add")
@model_options
def index_add(
    opts: ModelOptions,
    case: CaseArg,
    images: Annotated[Optional[Path], typer.Option(help="Folder of images (searched recursively).")] = None,
    list_file: Annotated[Optional[Path], typer.Option("--list", help="CSV list as for `xreid index build`.")] = None,
    video: VideoOpt = None,
    camera: CameraOpt = None,
    start: StartOpt = None,
    detector: DetectorOpt = "person-detection-retail-0013",
    stride: StrideOpt = 1,
    confidence: ConfidenceOpt = 0.1,
    fps: FpsOpt = None,
    head: HeadOpt = None,
    data_root: DataRoot = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per committed batch.")] = 256,
) -> None:
    """Append images or footage (--video) to an index (the model and attribute head must be the
    index's); images and videos it already holds are skipped."""
    from xreid.workflows.index import add_to_index

    if video is not None:
        _index_footage(opts, head, case, video, camera, start, detector, stride, confidence, fps, append=True)
        return
    _index_images(add_to_index, opts, head, data_root, case, images, list_file, batch_size,
                  interrupted=f"the batches committed so far are in {case}")


def _index_footage(opts: ModelOptions, head, case: Path, video: Path, camera, start, detector: str, stride: int,
                   confidence: float, fps, append: bool) -> None:
    """`index build --video` / `index add --video`: load the models, run the footage workflow, report."""
    from xreid.models.detector import Detector, resolve_detector
    from xreid.workflows.footage import FootageOptions, index_footage

    embedder = opts.load()
    attr_head = _head(opts.model, head)
    try:
        det = Detector(resolve_detector(detector), precision=opts.precision or "f32")
        report = index_footage(embedder, attr_head, det, video, case, camera=camera, start=start,
                               opts=FootageOptions(confidence=confidence, stride=stride, fps=fps),
                               head_name=_head_name(opts.model, head), append=append, say=typer.echo)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail(f"interrupted; the committed chunks and videos are kept in {case}: run the same command to resume",
             code=130)
    frames = sum(v.get("frames_read") or 0 for v in report.videos)
    typer.echo(f"{report.case}: {report.count} rows ({report.added} sightings added from {len(report.videos)} "
               f"video(s), {frames} frames, {report.seconds:.0f} s)")
    _list_skipped(report.skipped, "problem(s)")


def _index_images(job, opts: ModelOptions, head, data_root, case: Path, images, list_file, batch_size: int,
                  interrupted: str) -> None:
    """What `index build` and `index add` share: check the inputs, load model and head, run ``job``
    (build_index or add_to_index), report; an interruption says what is kept."""
    if (images is None) == (list_file is None):
        fail("give exactly one of --images DIR or --list FILE.csv")
    embedder = opts.load()
    attr_head = _head(opts.model, head)
    try:
        report = job(embedder, attr_head, resolve_data_root(data_root), case, images=images, list_file=list_file,
                     head_name=_head_name(opts.model, head), batch_size=batch_size)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    except OSError as exc:  # a full disk or read-only folder outside the index's own files
        fail(f"{exc.filename or case}: {exc.strerror or exc}; what was committed is intact: run the same command "
             f"again once it is fixed")
    except KeyboardInterrupt:
        fail(f"interrupted; {interrupted}", code=130)
    _index_summary(report)


def _index_summary(report) -> None:
    typer.echo(f"{report.case}: {report.count} images indexed ({report.added} added"
               + (f", {report.already} already there" if report.already else "") + ")"
               + (f"; ANN {report.ann['spec']}, nprobe {report.ann['nprobe']}" if report.ann else "; exact search"))
    _list_skipped(report.skipped, "image(s)")


@index_app.command("export")
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
        _outputs(out)
        try:
            n = export_index(case, out)
        except (FileNotFoundError, ValueError) as exc:
            fail(str(exc))
        typer.echo(f"{n} embeddings written to {out}")
    if mot is not None:
        from xreid.workflows.footage import export_mot

        files = export_mot(case, mot)
        if not files:
            fail(f"{case}: holds no indexed footage (build it with `xreid index build --video ...`)")
        typer.echo(f"{len(files)} MOTChallenge file(s) written to {mot}")


@index_app.command("timeline")
def index_timeline(
    case: CaseArg,
    out: Annotated[Path, typer.Option(help="Output file: .html (page), .json (data) or .png (for printing).")],
    items: Annotated[Optional[str], typer.Option(help="Only these rows, e.g. '3,7,12' (default: every sighting).")] = None,
) -> None:
    """The timeline of the case's sightings: one lane per camera, one bar per sighting."""
    from xreid.workflows.footage import export_timeline

    _outputs(out)
    try:
        ids = [int(v) for v in items.split(",") if v.strip()] if items else None
        data = export_timeline(case, out, ids)
    except (FileNotFoundError, ValueError, IndexError) as exc:
        fail(str(exc))
    typer.echo(f"timeline of {len(data['items'])} sighting(s) on {len(data['lanes'])} camera(s) written to {out}")


@index_app.command("check")
def index_check(
    case: CaseArg,
    repair: Annotated[bool, typer.Option(
        "--repair", help="Drop what is damaged: a segment's rows (ids kept; index their images again with "
                         "`xreid index add`), a thumbnail pack, the ANN file (built again). Damaged files are "
                         "moved to CASE/damaged/.")] = False,
) -> None:
    """Verify every file of an index against the sizes and SHA-256 its manifest recorded; exit 1 when
    something is damaged and not repaired."""
    from xreid.workflows.index import check_index

    try:
        report, done = check_index(case, repair)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    for name, problem in {**report.segments, **report.packs}.items():
        typer.echo(f"damaged: {case / 'segments' / name}: {problem}")
    if report.ann:
        typer.echo(f"damaged: {case / report.ann}")
    for line in done:
        typer.echo(line)
    typer.echo(f"{case}: {report.verified} file(s) checked"
               + (f" ({report.unchecked} without a recorded checksum: structure checked only)" if report.unchecked
                  else "")
               + (f"; {report.dropped_rows} row(s) dropped by an earlier repair" if report.dropped_rows else "")
               + ("; intact" if report.clean else "; repaired" if done else "; damaged (run again with --repair)"))
    if not report.clean and not done:
        raise typer.Exit(1)


@index_app.command("calibrate")
@model_options
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
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted; the training crops embedded so far are kept in the index folder: run the same "
             "command to resume", code=130)
    m = cal.meta
    typer.echo(f"{case / CALIBRATION_FILE}: same-person probability fitted on {m['searches']} simulated searches of "
               f"{m['protocol']} train ({m['pairs']} top-{cal.context} pairs, {m['true_matches']} true matches, "
               f"rank-1 {100 * m['rank1']:.1f} %); threshold {cal.threshold:g}")


@index_app.command("search")
@model_options
def index_search(
    opts: ModelOptions,
    case: CaseArg,
    query: Annotated[Optional[Path], typer.Option(help="Query image.")] = None,
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
) -> None:
    """Search an index for a query image, a description, or both (prints the top results)."""
    from xreid.index.filters import parse_filter
    from xreid.index.gallery import GalleryIndex
    from xreid.workflows.index import search_index

    if query is None and describe is None:
        fail("give a query image (--query), a description (--describe), or both")
    _outputs(json_out)
    try:
        index = GalleryIndex.open(case)
        spec = parse_filter(filter_text, index.attribute_names, index.field_names, source="index")
        where = parse_filter({"attributes": spec.attributes, "fields": spec.fields, "camera": camera or None,
                              "after": after, "before": before})
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    if describe is not None:
        _describe_search(opts, index, query, describe, where, top_k, exact, head, json_out)
        return
    embedder = opts.load()
    try:
        result = search_index(embedder, index, query, where, top_k, exact=exact)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
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
        from xreid.io import write_json
        from xreid.workflows.describe import image_json

        write_json(json_out, image_json(str(query), result, index))
        typer.echo(f"results written to {json_out}")


def _describe_search(opts: ModelOptions, index, query: Path | None, text: str, where, top_k: int, exact: bool,
                     head: Path | None, json_out: Path | None) -> None:
    """`xreid index search --describe`: alone, or joined to the image search of --query."""
    from xreid.io import write_json
    from xreid.workflows.describe import (describe_search, description_json, image_json, join_description,
                                          read_description)
    from xreid.workflows.index import search_index

    attr_head = _head(opts.model, head)
    try:
        if query is None:
            d, res = describe_search(index, text, attr_head, top_k, where)
        else:
            d = read_description(text, index)
            embedder = opts.load()
            res = join_description(index, d, attr_head, lambda k, w: search_index(embedder, index, query, w, k,
                                                                                  exact=exact), top_k, where)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    typer.echo("described: " + ", ".join(t.text for t in d.terms))
    for p in d.problems:
        typer.echo(f"  note: {p}")
    if query is None:
        weak = [t.text for t, w in zip(res.terms, res.weights) if w < 1]
        if weak:
            typer.echo(f"  unreliable for this model, weighted down: {', '.join(weak)}")
        typer.echo(f"{len(index)} images, {res.candidates} pass the filter; ranked by how well they fit ({res.rule})")
        lines = zip(res.ids, res.scores, res.evidence)
    else:
        typer.echo(f"image search re-ranked by the description ({res.mode})")
        lines = zip(res.ids, res.combined, res.evidence)
    from xreid.rendering.description import reason_line

    for rank, (i, s, ev) in enumerate(lines, 1):
        typer.echo(f"  {rank:>2}. id {int(i)}  score={s:.4f}  {index.keys[int(i)]}\n      {reason_line(ev)}")
    if not len(res.ids):
        typer.echo("  no image passes the filter")
    if json_out is not None:
        data = description_json(d, res, index) if query is None else image_json(str(query), res, index, d)
        write_json(json_out, data)
        typer.echo(f"results written to {json_out}")


@app.command()
@model_options
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
) -> None:
    """Serve a gallery index: REST API (/docs) and a search page for analysts, offline, at http://HOST:PORT/."""
    from xreid.serve.app import check_bind, serve as run_server
    from xreid.serve.case import CaseSession, Limits
    from xreid.workflows.match_calibration import load_match_calibration

    try:
        check_bind(host, token)
    except ValueError as exc:
        fail(str(exc))
    embedder = opts.load()
    attr_head = _head(opts.model, head)
    try:
        calibration = load_match_calibration(case, embedder.identity())
        session = CaseSession(case, embedder, attr_head, resolve_data_root(data_root), workdir=workdir,
                              calibration=calibration, threshold=threshold,
                              limits=Limits(max_upload_bytes=int(max_upload_mb * 2**20), max_pixels=max_pixels))
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    if calibration is None:
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


fuse_app = typer.Typer(help="Attribute fusion (ACRN-style): learned attribute weights and mixing for a frozen model.",
                       no_args_is_help=True)
app.add_typer(fuse_app, name="fuse")


@fuse_app.command("fit")
@model_options
def fuse_fit(
    opts: ModelOptions,
    out: Annotated[Path, typer.Option(help="Output fusion file (.npz).")],
    protocol: Annotated[str, typer.Option(help="'peta-reid': fitted on PETA-ReID-val's train list, chosen on its "
                                               "validation sets (the test sets are never used).")] = "peta-reid",
    attributes_model: Annotated[str, typer.Option(
        "--attributes-model", help="The model whose embedding the attribute classifier reads ('default' or a "
                                   "model file; it may be --model itself).")] = "default",
    attributes_head: Annotated[Optional[Path], typer.Option(
        "--attributes-head", help="The attribute head of --attributes-model (default: the bundled head, "
                                  "for --attributes-model default).")] = None,
    objective: Annotated[str, typer.Option(help="'complementary' (triplet loss on model + weighted attribute "
                                                "distance) or 'attributes' (weighted attribute distance alone).")] = "complementary",
    cache: Annotated[Optional[Path], typer.Option(help="Embedding cache folder (default: DATA_ROOT/embeddings).")] = None,
    data_root: DataRoot = None,
    allow_seen_validation: Annotated[bool, typer.Option(
        "--allow-seen-validation", help="Fit even when the attribute model or head was trained on the validation "
                                        "identities (refused by default: the choice would favour the attributes; "
                                        "the fusion records it).")] = False,
) -> None:
    """Learn non-negative per-attribute weights and their mixing with a frozen model's distance.

    Refused when the attribute model or head records training on PETA-ReID's training split, which
    holds the PETA-ReID-val identities every choice is made on (the bundled model and head do)."""
    import numpy as np

    from xreid.workflows.fuse import check_fusion_protocol, fit_fusion

    _outputs(out)
    try:
        check_fusion_protocol(protocol)
    except ValueError as exc:
        fail(str(exc))
    from xreid.workflows.fuse import check_attributes_unseen

    attr_head = _head(attributes_model, attributes_head)
    try:  # before any model is loaded or image embedded
        check_attributes_unseen(attributes_model, attr_head, "peta-reid-val", allow_seen_validation)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    root = resolve_data_root(data_root)
    embedder = opts.load()
    attr_opts = ModelOptions(model=attributes_model)
    attr_embedder = embedder if attributes_model == opts.model else attr_opts.load()
    try:
        fusion, report = fit_fusion(embedder, attr_embedder, attr_head, root, cache or root / "embeddings",
                                    protocol=protocol, attribute_spec=attributes_model, objective=objective,
                                    allow_seen_validation=allow_seen_validation)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted; the embeddings done so far are cached: run the same command to resume", code=130)
    fusion.save(out)
    c = report["chosen"]
    typer.echo(f"fusion written to {out}: mixing {c['mixing']}, {c['nonzero_weights']} of {len(fusion.names)} "
               f"attributes weighted (margin {c['margin']}, L2 {c['decay']}); validation mean mAP "
               f"{c['val_mAP']:.1f} / R1 {c['val_R1']:.1f}; {report['seconds']['fit']:.0f} s fitting")
    order = np.argsort(-fusion.weights)[:10]
    typer.echo("largest weights: " + ", ".join(f"{fusion.names[i]} {fusion.weights[i]:.3f}" for i in order
                                                if fusion.weights[i] > 0))


def _fusion(path: Optional[Path], embedder, attributes_model: Optional[str] = None):
    """(fusion, the embedder its attributes read) or (None, None); errors end the command."""
    if path is None:
        return None, None
    from xreid.explain.fusion import Fusion
    from xreid.workflows.fuse import load_attribute_embedder

    try:
        fusion = Fusion.load(path)
        fusion.check_model(embedder, str(path))
        return fusion, load_attribute_embedder(fusion, embedder, attributes_model)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))


models_app = typer.Typer(help="Known public models: download them into the model cache.", no_args_is_help=True)
app.add_typer(models_app, name="models")


@models_app.command("get")
def models_get(
    names: Annotated[list[str], typer.Argument(help="Model names (see `xreid models list`).")],
) -> None:
    """Download known models from their publisher (sha256-pinned, atomic, resumable) into the model
    cache; --detector and --model then take the short name. $XREID_MODEL_BASE_URL overrides the address."""
    from xreid.models.zoo import KNOWN_MODELS, ModelDownloadError, get_model

    for name in names:
        if name not in KNOWN_MODELS:
            fail(f"unknown model {name!r}; known: {', '.join(KNOWN_MODELS)}")
        try:
            path = get_model(name, progress=typer.echo)
        except ModelDownloadError as exc:
            fail(str(exc))
        typer.echo(f"{name}: {path}")


@models_app.command("list")
def models_list() -> None:
    """The known models and whether each is in the model cache."""
    from xreid.models.zoo import KNOWN_MODELS, is_installed, model_path

    for name, m in KNOWN_MODELS.items():
        typer.echo(f"{name:48s} {m.kind:10s} " + (str(model_path(name)) if is_installed(name) else "not fetched"))


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("xreid.data.peta",):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    app()


if __name__ == "__main__":
    main()

