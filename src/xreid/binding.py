"""Files bound to a model: which model (and attribute head) an artefact was made with, recorded one
way, and the one check that refuses a mismatch naming the file and both sides.

Six kinds of file carry a binding: an attribute head (the model whose embeddings it was fitted on),
a fusion (the re-id model whose distance it complements), a match calibration, an interpreter (the
model whose distances it decomposes, and the bundled trunk it reads), an ACRN attribute table (the
classifier that made it) and a gallery index (model and head); embedding files and caches too.

A binding is a plain dict: ``record(embedder)`` (the embedder's ``identity()``: model name,
fingerprint, backend, preprocessing, flip, precision) or, for a head, ``{"head", "head_fingerprint",
"names"}``. ``check_binding`` compares the fields that decide the numbers (``MODEL_FIELDS`` for a
model: the backend and precision move embeddings only within float tolerance).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from xreid.errors import XreidError

#: identity fields that decide the vectors themselves: what a model check compares
MODEL_FIELDS = ("fingerprint", "preprocess", "flip")
#: what decides an attribute head's probabilities: what a head check compares
HEAD_FIELDS = ("names", "head_fingerprint")
#: the name the bundled model goes by (``--model default``) in every binding
BUNDLED_NAME = "default"


class IdentityMismatch(XreidError):
    """A file was made with another model (or model set-up, or head) than the one at hand."""


def record(embedder) -> dict:
    """The binding to store with a file made with ``embedder``: its identity, or (for objects that
    only know a name and a fingerprint) those two."""
    if hasattr(embedder, "identity"):
        return embedder.identity()
    return {"model": getattr(embedder, "name", None), "fingerprint": getattr(embedder, "fingerprint", None)}


def head_fingerprint(head) -> str:
    """16 hex digits of the sha256 of what decides an attribute head's probabilities (names, weights,
    calibration), whatever file it came from."""
    h = hashlib.sha256(json.dumps(head.names).encode())
    for arr in (head.weights, head.calibration):
        if arr is not None:
            h.update(np.ascontiguousarray(arr, np.float64).tobytes())
    return h.hexdigest()[:16]


def head_binding(head, name: str = "") -> dict:
    """The binding to store with a file made with attribute head ``head`` (``name``: its file or spec)."""
    return {"head": name, "head_fingerprint": head_fingerprint(head), "names": list(head.names),
            "calibrated": head.calibration is not None}


def describe(binding: dict) -> str:
    """'NAME (fingerprint FP)' of a binding, whichever kind it is."""
    name = binding.get("model") or binding.get("name") or binding.get("head") or "?"
    fp = binding.get("fingerprint") or binding.get("head_fingerprint")
    return f"{name} (fingerprint {fp})"


def differences(stored: dict, current: dict, fields: Sequence[str] | None = None) -> list[str]:
    """The fields (all, or ``fields``) whose values differ between two bindings."""
    names = fields if fields is not None else sorted(set(stored) | set(current))
    return [k for k in names if stored.get(k) != current.get(k)]


def _short(binding: dict) -> str:
    return json.dumps({k: (f"[{len(v)} items]" if isinstance(v, list) and len(v) > 8 else v)
                       for k, v in binding.items()}, sort_keys=True)


def check_binding(path: str | Path, stored: dict | None, current: dict, fields: Sequence[str] | None = MODEL_FIELDS,
                  remedy: str = "", what: str = "made by another model set-up", verb: str = "made by",
                  strict: bool = True, error: type[Exception] = IdentityMismatch) -> None:
    """Refuse (``error``, default IdentityMismatch) a file whose recorded binding ``stored`` differs
    from ``current`` on ``fields`` (None: every field). The message names the file, what differs and
    both sides. ``strict``: a file that records no binding is refused too; otherwise a field unknown
    on either side (an older file, a model without a fingerprint) is not compared."""
    if stored is None:
        if not strict:
            return
        raise error(f"{path}: records no model identity (an older xreid wrote it), so it cannot be "
                    f"checked against this run's model {json.dumps(current, sort_keys=True)}. {remedy}")
    diff = differences(stored, current, fields)
    if not strict:
        diff = [k for k in diff if stored.get(k) is not None and current.get(k) is not None]
    if diff:
        upgraded = "fingerprint" in diff and stored.get("model") == current.get("model") == BUNDLED_NAME
        note = ("The bundled model has changed since this file was made (this xreid ships other weights): make "
                "the file again with it, or give the model file it was made with as the model.\n") if upgraded else ""
        raise error(f"{path}: {what} ({', '.join(diff)} differ): {verb} {describe(stored)}, the one in use is "
                    f"{describe(current)}\n  in the file: {_short(stored)}\n  this run:    {_short(current)}\n"
                    f"{note}{remedy}")
