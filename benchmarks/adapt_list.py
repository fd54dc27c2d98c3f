"""The unlabeled input of the adaptation measurement: the PETA-ReID training images of the
test sets' subsets (VIPeR, PRID, GRID; their training halves, other people than the test sets') as a
CSV list with the identity labels removed (``path,camera``; paths relative to the PETA image folder),
for ``xreid adapt``. The cross-domain model never saw these cameras; after adapting on this list it is
evaluated on PETA-ReID test as usual.

    python benchmarks/adapt_list.py --data-root DATA_ROOT --out runs/adapt/peta_test_cameras_train.csv
    xreid adapt runs/adapt/peta_test_cameras_train.csv --data-root "DATA_ROOT/peta/PETA dataset" \\
        --model runs/xdomain_aug/peta_mobilenetv2_xdomain_aug/model.pt --out runs/adapt/adapted.pt [--teacher ...]
    xreid eval --model runs/adapt/adapted.pt --protocol peta-reid
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

from xreid.data.protocol import load_protocol


def unlabeled_rows(protocol, subsets: set[str]) -> list[tuple[str, str]]:
    """(path, camera) of ``protocol``'s training images of ``subsets``, no identity; none of them is
    of a person of the protocol's test sets."""
    tested = {r.pid for t in protocol.test_sets for r in t.query + t.gallery}
    train = [r for r in protocol.train if r.path.split("/")[0] in subsets]
    assert not any(r.pid in tested for r in train), "a test identity in train"
    return [(r.path, r.cam or "") for r in train]


def write_list(rows: list[tuple[str, str]], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "camera"])
        writer.writerows(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", type=Path, default=os.environ.get("XREID_DATA_ROOT"))
    ap.add_argument("--protocol", default="peta-reid")
    ap.add_argument("--subsets", default="VIPeR,PRID,GRID")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--searched", action="store_true",
                    help="list the test sets' own query and gallery images instead (camera statistics from the "
                         "images searched, as from a user's case; transductive)")
    args = ap.parse_args()
    if args.data_root is None:
        raise SystemExit("give --data-root or set XREID_DATA_ROOT")
    protocol = load_protocol(args.protocol, args.data_root)
    subsets = set(args.subsets.split(","))
    if args.searched:
        rows = [(r.path, r.cam or "") for r in protocol.test_images()]
    else:
        rows = unlabeled_rows(protocol, subsets)
    write_list(rows, args.out)
    print(f"{len(rows)} unlabeled {'searched' if args.searched else 'training'} crops of {', '.join(sorted(subsets))} written to {args.out} "
          f"(image root {protocol.image_root})")


if __name__ == "__main__":
    main()
