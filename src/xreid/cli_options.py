"""What the ``xreid`` commands share: the model options, the common options, registering a command
with its error handling (bad input ends it with one line, exit 2; an interruption with what was
kept, exit 130) and the message helpers."""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Annotated, Optional

import typer

from xreid.workflows.loading import ModelOptions

DataRoot = Annotated[Optional[Path], typer.Option(
    "--data-root", help="Dataset folder (default: $XREID_DATA_ROOT, else ~/.cache/xreid).")]
HeadOpt = Annotated[Optional[Path], typer.Option(
    "--head", help="Attribute head (.npz from `xreid attributes fit`); --model default has its own.")]
FusionOpt = Annotated[Optional[Path], typer.Option(
    "--fusion", help="Rank by the fused distance of `xreid fuse fit` (model distance + weighted attributes).")]
ImagesOpt = Annotated[Optional[Path], typer.Option(help="Folder of images (searched recursively).")]


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


def option_group(parameters: list[inspect.Parameter], make, argument: str):
    """A decorator giving a command the options ``parameters``, collected by ``make(**values)`` into
    its argument ``argument`` (how commands share option sets)."""
    def decorate(command):
        signature = inspect.signature(command, eval_str=True)  # typer reads the annotations as objects
        own = [p for p in signature.parameters.values() if p.name != argument]

        @functools.wraps(command)
        def wrapper(**kwargs):
            return command(**{argument: make(**{p.name: kwargs.pop(p.name) for p in parameters})}, **kwargs)

        wrapper.__signature__ = signature.replace(parameters=own + parameters)
        return wrapper
    return decorate


#: the shared model options, collected into a command's ``opts: ModelOptions`` argument
model_options = option_group(_MODEL_PARAMETERS, ModelOptions, "opts")


def fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


ERRORS = (FileNotFoundError, FileExistsError, ValueError)


def handled(command):
    """End ``command`` with its error's message (exit 2), or an interruption's (exit 130)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except ERRORS as exc:
            fail(str(exc))
        except KeyboardInterrupt as exc:
            fail(str(exc) or "interrupted", code=130)

    return wrapper


def command(group: typer.Typer | None, name: str | None = None, models: bool = False):
    """Register a command on ``group`` (None: only wrap it) with error handling and, with ``models``,
    the model options."""
    def register(fn):
        wrapped = handled(model_options(fn) if models else fn)
        return wrapped if group is None else group.command(name)(wrapped)
    return register


def outputs(*files: Optional[Path], folders: tuple[Optional[Path], ...] = ()) -> None:
    """Check every output can be written before any work starts."""
    from xreid.workflows.outputs import check_writable

    check_writable(*files, folders=folders)


def echo(lines: list[str]) -> None:
    for line in lines:
        typer.echo(line)


def bullets(lines: list[str]) -> None:
    echo([f"  - {line}" for line in lines])


def list_skipped(skipped: list[str], what: str = "file(s)") -> None:
    if skipped:
        typer.echo(f"skipped {len(skipped)} {what}:")
        bullets(skipped)


def one_source(images: Optional[Path], list_file: Optional[Path], what: str = "FILE") -> None:
    if (images is None) == (list_file is None):
        fail(f"give exactly one of --images DIR or --list {what}")
