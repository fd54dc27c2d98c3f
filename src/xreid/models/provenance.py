"""What a model or an attribute head was trained on, as its own file records it, and whether that
includes the identities a choice is made on.

A choice made on a validation set is only worth something if what is being chosen never saw the
validation identities. PETA-ReID-val's validation sets are identities of PETA-ReID's training split:
a network or head trained on ``peta-reid`` saw them (the bundled model, whose checkpoint records
``config.protocol = "peta-reid"``, and its head, "trained with the network on PETA-ReID train"); one
trained on ``peta-reid-val`` did not, nor did a network trained elsewhere. ``xreid attributes fit``
heads record their fit in ``meta.source`` ("fit: PETA-ReID-val train + ...").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

#: a validation protocol -> the protocols whose training split holds its validation identities
VALIDATION_SOURCES = {"peta-reid-val": ("peta-reid",)}
_SOURCE = re.compile(r"\b(PETA-ReID(?:-val)?)\s+train\b", re.IGNORECASE)


def normalise_protocol(name: str | None) -> str | None:
    if not name:
        return None
    base = Path(str(name)).stem if str(name).endswith(".json") else str(name)
    return base.strip().lower().replace("_", "-")


@dataclass(frozen=True)
class Provenance:
    """What one file says it was trained on: the protocol (normalised name) or None when it does not
    say (a black-box model, an older file); ``how`` quotes where that came from."""

    what: str
    protocol: str | None
    how: str

    def saw(self, validation: str) -> bool | None:
        """True when its training split holds ``validation``'s identities, False when it does not,
        None when the file does not say."""
        if self.protocol is None:
            return None
        return self.protocol in VALIDATION_SOURCES.get(normalise_protocol(validation), ())


def model_provenance(spec: str) -> list[Provenance]:
    """One entry per model of ``spec`` ('default', a .pt, an .xml / .onnx, or several joined by commas)."""
    from xreid.models.loading import resolve_model_path

    out = []
    for part in [s.strip() for s in str(spec).split(",") if s.strip()]:
        path = resolve_model_path(part)
        if path.suffix not in (".pt", ".pth"):
            out.append(Provenance(f"model {part}", None, "a model file from elsewhere records no training data"))
            continue
        from xreid.models.checkpoint import load_safely

        meta = (load_safely(path) or {}).get("meta") or {}
        config = meta.get("config") if isinstance(meta, dict) else None
        protocol = normalise_protocol(config.get("protocol")) if isinstance(config, dict) else None
        out.append(Provenance(f"model {part}", protocol,
                              f"its checkpoint's config.protocol = {protocol!r}" if protocol
                              else "its checkpoint records no protocol"))
    return out


def head_provenance(meta: dict, what: str = "attribute head") -> Provenance:
    """An attribute head's training data, from ``meta["protocol"]`` or its ``source`` line."""
    if meta.get("protocol"):
        return Provenance(what, normalise_protocol(meta["protocol"]), f"its meta.protocol = {meta['protocol']!r}")
    match = _SOURCE.search(str(meta.get("source", "")))
    if match:
        return Provenance(what, normalise_protocol(match.group(1)), f"its meta.source: {meta['source']!r}")
    return Provenance(what, None, "its meta records no training protocol")
