"""Person ids from file names, only where a naming convention states them.

A person id is *known* when a protocol or a CSV list gives it, or when the file name follows a
dataset convention that encodes it (PETA's re-id subsets, Market-1501). Folder names are never
taken for identities: a folder called ``gallery`` or ``camera3`` says nothing about who is in it,
and guessing would mark results as true matches or as different people without evidence.
"""

from __future__ import annotations


def pid_from_name(key: str) -> str | None:
    """The person id a file name encodes (``VIPeR/archive/001_45_1.jpg`` -> ``VIPeR/001``,
    ``0002_c1s1_000451_03.jpg`` -> ``market/0002``), or None when no registered convention applies
    (``xreid.data.registry.parse_name``)."""
    from xreid.data.registry import parse_name

    found = parse_name(key) if key else None
    return found[0] if found else None
