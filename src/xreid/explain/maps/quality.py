"""Which map types a report draws by default, given how faithful each was measured to be for the model.

A map type whose recorded deletion ratio (docs/METHODS.md#measuring-explanations: area under the
deletion curve in the map's order / in random order; 1 = chance) is above ``MAP_QUALITY_THRESHOLD``
for the model at hand is near chance: it is left out of the default choice, and the report says which
and why. Asked for by name (``--maps``), it is still drawn. A model with no record keeps the default.
The records are files beside the model (``xreid.models.map_quality``); this is the rule alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

#: the highest recorded deletion ratio at which a map type is still drawn by default (chance = 1)
MAP_QUALITY_THRESHOLD = 0.9


def left_out_note(kind: str, record: Mapping, threshold: float = MAP_QUALITY_THRESHOLD) -> str:
    """The report's sentence saying why ``kind`` maps are not drawn by default."""
    where = ", ".join(str(x) for x in (f"{record['pairs']} pairs" if record.get("pairs") else None,
                                        record.get("protocol")) if x)
    return (f"{kind} maps are not drawn by default for this model: in the deletion test they are near chance "
            f"(ratio {float(record['deletion_ratio']):.3f}{f' on {where}' if where else ''}; 1 = chance, drawn by "
            f"default only at or below {threshold:g}). Ask for them by name (--maps {kind}) to draw them anyway.")


def default_map_choice(candidates: Sequence[str], recorded: Mapping[str, Mapping] | None,
                       threshold: float = MAP_QUALITY_THRESHOLD) -> tuple[list[str], list[str]]:
    """The default map types: ``candidates`` less those whose recorded deletion ratio is above
    ``threshold``; returns (kept, one note per type left out). No record (None, or none for a type):
    the type is kept."""
    kept, notes = [], []
    for kind in candidates:
        record = (recorded or {}).get(kind)
        if record is not None and float(record["deletion_ratio"]) > threshold:
            notes.append(left_out_note(kind, record, threshold))
        else:
            kept.append(kind)
    return kept, notes
