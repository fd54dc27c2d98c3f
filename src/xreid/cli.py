"""The ``xreid`` command line: options and messages only. Every command calls its workflow
(``xreid.workflows``, or ``xreid.serve`` for the server); ``xreid index`` and ``xreid serve`` are in
``xreid.cli_index``, what the commands share in ``xreid.cli_options``."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from xreid.cli_index import index_app, serve
from xreid.cli_options import (DataRoot, FusionOpt, HeadOpt, ImagesOpt, ModelOptions, bullets, command, echo, fail,
                               list_skipped, one_source, outputs)
from xreid.paths import resolve_data_root
from xreid.workflows.loading import load_fusion, load_head

app = typer.Typer(help="xreid: explainable person re-identification.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
data_app = typer.Typer(help="Prepare datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
attr_app = typer.Typer(help="Fit and evaluate the attribute layer on a model's embeddings.", no_args_is_help=True)
app.add_typer(attr_app, name="attributes")


@command(data_app, "prepare")
def data_prepare(
    dataset: Annotated[str, typer.Argument(help="Dataset name: 'peta'.")],
    source: Annotated[Path, typer.Option(help="PETA archive (.tar.zst/.tar.gz/...) or extracted folder.")],
    data_root: DataRoot = None,
) -> None:
    """Extract / link a dataset into the data root and check its labels."""
    from xreid.workflows.data import prepare_dataset

    ready = prepare_dataset(dataset, source, resolve_data_root(data_root))
    typer.echo(f"{ready.title} ready at {ready.folder}: {ready.images} images, {ready.identities} identities")
    if ready.problems:
        typer.echo(f"{len(ready.problems)} problem(s) found (images without labels are kept unlabelled):")
        bullets(ready.problems)
    if ready.title == "PETA":
        typer.echo(f"PETA-ReID protocol: {ready.protocol or 'not found beside the source'}")


@command(app)
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
    from xreid.workflows.train import train_model

    report = train_model(config, resolve_data_root(data_root), resume, max_batches, set_, cache)
    typer.echo(f"model written to {report.model}")
    if report.acrn is not None:
        path, scores = report.acrn
        typer.echo(f"ACRN fusion (learnt attribute weights + mixing) written to {path}"
                   + (": validation mean mAP by mixing " + ", ".join(f"{m:g}: {v:.1f}" for m, v in scores.items())
                      if scores else "") + f"; rank with --fusion {path}")
    if report.projection:
        typer.echo("it ranks with its {descriptor} descriptor projected to {dims} dimensions (fitted on {fit_crops} "
                   "training crops); the network before it: model_full.pt".format(**report.projection))
    if report.head is not None:
        head = report.head
        held = head.meta.get("held_out_mA")
        typer.echo(f"attribute head ({len(head.names)} attributes) written to {report.head_path}"
                   + (f"; mA on {head.meta['calibration_images']} held-out images: {held:.1f} %" if held else ""))
        if head.meta["never_positive_in_training"]:
            typer.echo(f"never positive in training (left out of mA): {', '.join(head.meta['never_positive_in_training'])}")


@command(app)
def adapt(
    source: Annotated[Path, typer.Argument(
        metavar="CASE_OR_IMAGES", help="Unlabeled crops of your cameras: a case (index folder; its 'track' column, "
                                       "if any, gives positives), a folder of images, or a CSV list "
                                       "(path[,camera][,track]).")],
    out: Annotated[Path, typer.Option(help="The adapted model file: .pt (fine-tuned, an xreid model), or .xcam "
                                           "(any model, black boxes included, centred per camera; no training).")],
    model: Annotated[str, typer.Option(help="The model to start from ('default' or a .pt; for a .xcam, any "
                                            "model).")] = "default",
    teacher: Annotated[Optional[str], typer.Option(
        help="Distil from this model on the crops (e.g. an Open Model Zoo .xml of the same embedding size).")] = None,
    teacher_precision: Annotated[Optional[str], typer.Option(help="The teacher's OpenVINO precision: f32 or bf16.")] = None,
    rounds: Annotated[Optional[int], typer.Option(min=0, help="Cluster-then-train rounds (0: only each camera's "
                                                              "normalisation statistics; default 8).")] = None,
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
    camera_norm: Annotated[bool, typer.Option(
        help="Store normalisation statistics in the model for each camera the crops name (a case's or list's "
             "camera column), else for each group of crops that look alike; a crop is embedded with its "
             "camera's, or with those of the camera or group it looks most like.")] = True,
) -> None:
    """Fine-tune a model on the unlabeled crops of your cameras: pseudo-identities by clustering, positives
    from tracks, optional distillation, then each camera's normalisation statistics; checkpoints atomically
    and resumes after interruption. With --out SITE.xcam: any model's embeddings centred on each camera's
    mean instead (no training; black boxes too)."""
    import signal

    from xreid.training.adapt import AdaptConfig
    from xreid.workflows.adapt import adapt as run_adapt

    def stop(signum, frame):  # SIGTERM saves progress like Ctrl-C does
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    if out.suffix == ".xcam":
        if rounds or teacher:
            raise typer.BadParameter("a .xcam output only centres each camera's embeddings (no training): leave out "
                                     "--rounds and --teacher, or adapt to a .pt first and centre that", param_hint="--out")
        return _centre(model, source, out, data_root)
    cfg = AdaptConfig(rounds=8 if rounds is None else rounds, batches=batches, lr=lr, eps=eps, min_samples=min_samples, k1=k1, k2=k2,
                      distance=distance, teacher=teacher, teacher_precision=teacher_precision)
    report = run_adapt(model, source, out, cfg, data_root=resolve_data_root(data_root), resume=resume,
                       max_batches=max_batches, camera_norm=camera_norm)
    list_skipped(report.skipped, "image(s)")
    if not report.finished:
        typer.echo(f"stopped after --max-batches; progress in {report.out} (continue with --resume)")
        return
    last = report.history[-1] if report.history else {}
    typer.echo(f"adapted model written to {report.out} ({report.images} crops"
               + (f", {report.tracks} tracks" if report.tracks else "")
               + (f"; last round: {last['clusters']} pseudo-identities holding {last['clustered']} crops" if last else "")
               + report.statistics_note()
               + "); its embedding changed: fit its attribute head with `xreid attributes fit --model "
               + f"{report.out} --out HEAD.npz` before explaining with it")


def _centre(model: str, source: Path, out: Path, data_root) -> None:
    """`xreid adapt ... --out SITE.xcam`: the camera-centred model."""
    from xreid.workflows.adapt import centre_cameras

    report = centre_cameras(model, source, out, resolve_data_root(data_root))
    list_skipped(report.skipped, "image(s)")
    few = ", ".join(f"{c} ({n})" for c, n in sorted(report.cameras_left_out.items()))
    typer.echo(f"camera-centred model written to {out} ({report.images} crops; a mean for {len(report.cameras)} "
               f"camera(s): {', '.join(report.cameras)}" + (f"; too few crops for a mean, centred on the nearest "
               f"camera's: {few}" if few else "") + f"). Use it as --model {out}; to explain with it, fit its "
               f"attribute head: `xreid attributes fit --model {out} --out HEAD.npz`")


@command(app, "eval", models=True)
def evaluate(
    opts: ModelOptions,
    protocol: Annotated[str, typer.Option(help="'peta-reid' (found in the data root) or a protocol JSON path.")] = "peta-reid",
    data_root: DataRoot = None,
    rerank: Annotated[bool, typer.Option(help="k-reciprocal re-ranking (k1=20, k2=6, lambda=0.3).")] = False,
    query_expansion: Annotated[bool, typer.Option(help="Average query expansion (top-5 / top-10).")] = False,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write all figures to this JSON file.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = 64,
    fusion: FusionOpt = None,
    query_cameras: Annotated[bool, typer.Option(help="Embed queries with their cameras (off: as uploads of unknown camera).")] = True,
) -> None:
    """Evaluate a model: CMC rank-1/5/10/20, mAP and mINP per test set and their mean."""
    from xreid.evaluation.evaluate import format_result
    from xreid.io import write_json
    from xreid.workflows.evaluate import evaluate_model

    outputs(json_out)
    if fusion is not None and (rerank or query_expansion):  # before the model loads
        fail("--fusion ranks by the fused distance: it cannot be combined with --rerank or --query-expansion")
    embedder = opts.load()
    fused, attr_embedder = load_fusion(fusion, embedder)
    result = evaluate_model(embedder, protocol, resolve_data_root(data_root), rerank=rerank,
                            query_expansion=query_expansion, batch_size=batch_size, fusion=fused,
                            attribute_embedder=attr_embedder, query_cameras=query_cameras)
    typer.echo(f"{result.model} on {result.protocol} ({result.images_embedded} images, "
               f"{result.images_embedded / max(result.embed_seconds, 1e-9):.0f} img/s incl. decoding)")
    typer.echo(format_result(result))
    list_skipped(result.skipped_images, "unreadable image(s)")
    if json_out:
        write_json(json_out, result.to_dict())
        typer.echo(f"figures written to {json_out}")


@command(app, models=True)
def embed(
    opts: ModelOptions,
    out: Annotated[Path, typer.Option(help="Output .npz: one float32 embedding per image, key = path relative to the data root.")],
    data_root: DataRoot = None,
    images: ImagesOpt = None,
    list_file: Annotated[Optional[Path], typer.Option("--list", help="CSV with a header row naming its columns: 'path' (relative to the data root, "
                                                                  "no '..') required; read by name.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from OUT.partial.npz if an earlier run was interrupted.")] = True,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = 64,
) -> None:
    """Embed images to an .npz file; unreadable images are skipped and listed. Interrupted runs resume."""
    from xreid.workflows.embed import embed_images

    one_source(images, list_file)
    outputs(out)
    report = embed_images(opts.load(), resolve_data_root(data_root), out, images=images, list_file=list_file,
                          resume=resume, batch_size=batch_size)
    typer.echo(f"{report.embedded + report.reused} embeddings written to {report.out}"
               + (f" ({report.reused} reused from an interrupted run)" if report.reused else ""))
    list_skipped(report.skipped, "image(s)")
    if report.embedded + report.reused == 0:
        fail("no usable image", code=1)


@command(app)
def export(
    out: Annotated[Path, typer.Option(help="Output path (.onnx, or .xml for OpenVINO).")],
    model: Annotated[str, typer.Option("--model", help="'default' (bundled) or a .pt checkpoint from `xreid train`.")] = "default",
    fmt: Annotated[str, typer.Option("--format", help="'onnx' or 'openvino'.")] = "onnx",
) -> None:
    """Export an xreid model for fast inference and check it gives the same embeddings."""
    from xreid.workflows.export import export_model

    outputs(out)
    report = export_model(model, fmt, out)
    typer.echo(f"exported {report['format']} model to {report['path']}; "
               f"cosine to PyTorch embeddings: min {report['min_cosine']:.6f}")
    if report["min_cosine"] < 0.999:
        fail("exported model disagrees with the PyTorch model (cosine < 0.999)", code=1)


@command(attr_app, "fit", models=True)
def attributes_fit(
    opts: ModelOptions,
    out: Annotated[Path, typer.Option(help="Output attribute head (.npz).")],
    protocol: Annotated[str, typer.Option(help="'peta-reid' or a protocol JSON path (PETA attributes).")] = "peta-reid",
    data_root: DataRoot = None,
    market_root: Annotated[Optional[Path], typer.Option(help="Fit on Market-1501 instead: its root folder.")] = None,
    market_attributes: Annotated[Optional[Path], typer.Option(help="market_attribute.mat (with --market-root).")] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Full-batch optimisation steps.")] = 300,
    cache: Annotated[Optional[Path], typer.Option(
        help="Embedding cache folder, one file per model (several models: one per part), kept for the next "
             "fit; an interrupted fit resumes from it.")] = None,
) -> None:
    """Train the bias-free linear attribute layer on frozen embeddings (class-balanced BCE)."""
    from xreid.workflows.attributes import fit_head

    outputs(out)
    root = resolve_data_root(data_root)
    try:
        head = fit_head(opts.load(), root, protocol, market_root, market_attributes, epochs=epochs,
                        model_name=opts.model, cache=cache)
    except KeyboardInterrupt:
        fail("interrupted" + ("; the embeddings done so far are cached: run the same command to resume"
                              if cache is not None else " (--cache keeps the embeddings for the next run)"), code=130)
    head.save(out)
    typer.echo(f"attribute head ({len(head.names)} attributes, {head.embedding_dim}-d embeddings, "
               f"{head.meta['train_images']} images) written to {out}")
    if head.meta["never_positive_in_training"]:
        typer.echo(f"never positive in training (their probabilities carry no information): "
                   f"{', '.join(head.meta['never_positive_in_training'])}")


@command(attr_app, "eval", models=True)
def attributes_eval(
    opts: ModelOptions,
    head: HeadOpt = None,
    protocol: Annotated[str, typer.Option(help="'peta-reid' or a protocol JSON path.")] = "peta-reid",
    data_root: DataRoot = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write all figures to this JSON file.")] = None,
) -> None:
    """Attribute recognition on the protocol's test images: mA and per-attribute TPR / TNR / accuracy."""
    from xreid.io import write_json
    from xreid.rendering.text import attribute_table
    from xreid.workflows.attributes import evaluate_head

    outputs(json_out)
    embedder = opts.load()
    report = evaluate_head(embedder, load_head(opts.model, head), resolve_data_root(data_root), protocol)
    echo(attribute_table(report))
    if json_out:
        write_json(json_out, {"model": opts.model, "head": str(head or "bundled"), **report})


@command(app, models=True)
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
             "or 'none'. Default: pair for xreid models (unless the model's map-quality record measured them "
             "near chance: the report then says so), none for black-box models (occlusion takes seconds "
             "per result).")] = None,
    map_dims: Annotated[int, typer.Option(min=1, help="Pair maps: embedding dims per pair.")] = 5,
    interpreter: Annotated[Optional[Path], typer.Option(
        help="An interpreter of this model (`xreid interpret fit`): adds its per-attribute parts of each "
             "distance and its attention maps.")] = None,
    fusion: FusionOpt = None,
) -> None:
    """Rank a gallery for a query and explain the top results in attributes (HTML + JSON)."""
    from xreid.rendering.text import ranking_lines
    from xreid.workflows.explain import explain as run_explain
    from xreid.workflows.explain import map_choice, maps_folder, write_report
    from xreid.workflows.loading import load_interpreter

    kinds, map_notes = map_choice(maps, opts.model)  # the other options are checked once, by the workflow, before any embedding
    outputs(out, json_out, folders=(maps_folder(out) if kinds or interpreter else None,))
    interp = load_interpreter(interpreter)
    embedder = opts.load()  # xreid models keep their PyTorch module at hand for Grad-CAM maps
    attr_head = load_head(opts.model, head)
    fused, attr_embedder = load_fusion(fusion, embedder)
    result = run_explain(embedder, attr_head, query, gallery, data_root=data_root, protocol=protocol,
                         test_set=test_set, query_index=query_index, query_id=query_id, top_k=top_k,
                         threshold=threshold, filter=filter_text, filter_mode=filter_mode, maps=kinds,
                         map_dims=map_dims, model_name=opts.model, interpreter=interp, fusion=fused,
                         attribute_embedder=attr_embedder, map_notes=map_notes)
    write_report(result, out, json_out)
    echo(ranking_lines(result.explanation) + [f"note: {note}" for note in result.notes])
    list_skipped(result.skipped)
    typer.echo(f"report: {out}" + (f", data: {json_out}" if json_out else ""))


interpret_app = typer.Typer(help="The distilled interpreter: per-attribute parts of any model's distances.",
                            no_args_is_help=True)
app.add_typer(interpret_app, name="interpret")


@command(interpret_app, "fit", models=True)
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

    outputs(out)
    config = FitConfig() if epochs is None else replace(FitConfig(), epochs=epochs)
    interp = run_fit(opts.load(), resolve_data_root(data_root), out, protocol, config, cache, model_name=opts.model)
    typer.echo(f"interpreter of {opts.model} ({len(interp.names)} attributes, {interp.meta['train_images']} "
               f"training crops) written to {out}")
    if interp.absent:
        typer.echo(f"never positive in training (their parts carry no attribute meaning): {', '.join(interp.absent)}")


@command(app, models=True)
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

    attr_head = load_head(opts.model, head)
    parse_dims(dims, attr_head)
    outputs(folders=(out,))
    index = run_analyze(opts.load(), attr_head, protocol, resolve_data_root(data_root), out, dims)
    typer.echo(f"analysis written to {index}")


app.add_typer(index_app, name="index")
app.command("serve")(serve)

fuse_app = typer.Typer(help="Attribute fusion (ACRN-style): learned attribute weights and mixing for a frozen model.",
                       no_args_is_help=True)
app.add_typer(fuse_app, name="fuse")


@command(fuse_app, "fit", models=True)
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

    outputs(out)
    check_fusion_protocol(protocol)
    from xreid.workflows.fuse import check_attributes_unseen

    attr_head = load_head(attributes_model, attributes_head)
    check_attributes_unseen(attributes_model, attr_head, "peta-reid-val", allow_seen_validation)  # before any model loads
    root = resolve_data_root(data_root)
    embedder = opts.load()
    attr_embedder = embedder if attributes_model == opts.model else ModelOptions(model=attributes_model).load()
    try:
        fusion, report = fit_fusion(embedder, attr_embedder, attr_head, root, cache or root / "embeddings",
                                    protocol=protocol, attribute_spec=attributes_model, objective=objective,
                                    allow_seen_validation=allow_seen_validation)
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


models_app = typer.Typer(help="Known public models: download them into the model cache.", no_args_is_help=True)
app.add_typer(models_app, name="models")


@command(models_app, "get")
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


@command(models_app, "list")
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

