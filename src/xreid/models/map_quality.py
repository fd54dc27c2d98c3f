"""The recorded faithfulness of a model's visual maps: ``NAME_map_quality.json`` beside the model file
(``weights/default_map_quality.json`` for the bundled model), written by ``benchmarks/bench_maps.py
--record``. Per map type (``--maps`` name): the deletion ratio measured (docs/METHODS.md#measuring-
explanations), the number of pairs, the protocol and the command. The file is bound to the model's
fingerprint (``xreid.binding``): a record of other weights is refused, naming the file. The rule that
reads it is ``xreid.explain.maps.quality``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from xreid.binding import check_binding
from xreid.io import read_json, write_json

FORMAT = "xreid-map-quality"
#: the identity field the figures depend on (the backend moves embeddings only within float tolerance)
FIELDS = ("fingerprint",)


def map_quality_path(model_file: str | Path) -> Path:
    """Where a model file's map-quality record lives: beside it, ``NAME_map_quality.json``."""
    model_file = Path(model_file)
    return model_file.with_name(f"{model_file.stem}_map_quality.json")


@dataclass
class MapQuality:
    """Per map type, ``{"deletion_ratio", "pairs", "protocol", "command"}``; ``identity``: the model's
    ``{"model", "fingerprint"}``."""

    maps: dict[str, dict]
    identity: dict
    test: str = "deletion test, docs/METHODS.md#measuring-explanations"
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": 1, "identity": self.identity, "test": self.test, "maps": self.maps,
                "notes": self.notes}

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict(), allow_nan=False)

    @classmethod
    def load(cls, path: str | Path) -> "MapQuality":
        """Read and check a record; ValueError naming the file and the problem."""
        data = read_json(path, "map-quality record")
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{path}: not a map-quality record (format {FORMAT!r} expected)")
        maps = data.get("maps")
        if not isinstance(maps, dict):
            raise ValueError(f"{path}: 'maps' must be an object of map type -> figures")
        for kind, rec in maps.items():
            ratio = rec.get("deletion_ratio") if isinstance(rec, dict) else None
            if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or not 0 <= ratio < float("inf"):
                raise ValueError(f"{path}: map type {kind!r} has no finite non-negative 'deletion_ratio'")
        return cls(maps, dict(data.get("identity") or {}), str(data.get("test", "")), list(data.get("notes", [])))


def load_map_quality(model: str) -> MapQuality | None:
    """The map-quality record of model ``model`` ('default' or a model file; None for a list of models,
    or when no record lies beside the file). A record of other weights is refused (IdentityMismatch)."""
    from xreid.models.fingerprint import fingerprint
    from xreid.models.loading import resolve_model_path

    if "," in str(model):
        return None
    path = resolve_model_path(model)
    record_path = map_quality_path(path)
    if not record_path.is_file():
        return None
    quality = MapQuality.load(record_path)
    check_binding(record_path, quality.identity or None, {"model": str(model), "fingerprint": fingerprint(path)},
                  fields=FIELDS, what="measured on other weights", verb="measured on",
                  remedy="Measure this model's maps again (benchmarks/bench_maps.py --record) or delete the file.")
    return quality
