"""A sharded gallery whose shards live in Ray actors, possibly on other nodes of a cluster, searched
as one (``xreid serve --ray ADDRESS``, ``xreid index search --ray ADDRESS``).

The case is an ordinary sharded case (``xreid.index.sharded``, from ``xreid index build --shards
N``). Each shard folder is opened by one ``ShardServer`` actor, which holds that shard's vectors and
ANN structure; shard i's actor is placed on the i-th live node, round robin, so a cluster of
several nodes spreads the shards (and their memory) evenly over them. The placement is a hard node
affinity: a soft one (the first way) let Ray put every actor on one node of a loaded machine (10 of
24 opens of the test's two-node cluster beside two busy processes), which for large shards means
one node holding them all. A crashed actor restarts on its node; if the node itself is gone,
that shard's searches fail until the case is opened again (on the live nodes). Every node must see the case at the same path (a shared
or replicated file system): an actor opens its shard from disk, no vector travels from the driver.

``search`` sends the query and the filter to every actor at once; each searches its own shard
(filter applied inside it, ANN or exact as the shard decides) and answers its top k as shard-local
ids and distances; the driver merges them exactly as the in-process ``ShardedGallery`` does (the k
smallest distances, ties by id), so the result is the top k of one index over all rows.

The driver keeps what a page and an explanation read by row id (keys, times, string fields,
attribute codes: about 100 bytes a row) but not the vectors: it reads each shard once at open
(one shard's vectors at a time, dropped before the next) and asks the actors for the few
vectors an explanation needs (``vectors_of``). Actors end when the gallery is closed or dropped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xreid.index.filters import Filter
from xreid.index.gallery import GalleryIndex, GalleryIndexError, read_manifest
from xreid.index.sharded import ShardedGallery, ShardHits, shard_answer


def connect(address: str | None) -> None:
    """Join the Ray cluster at ``address`` ('auto': the running one; None or 'local': start one in
    this process), unless this process is connected already."""
    import ray

    if not ray.is_initialized():
        ray.init(address=None if address in (None, "local") else address, include_dashboard=False,
                 log_to_driver=False)


class ShardServer:
    """One shard of a case, held in a Ray actor (see the module docstring)."""

    def __init__(self, folder: str, ann: bool = True):
        self.index = GalleryIndex.open(folder, ann=ann)

    def info(self) -> dict:
        import os

        import ray

        return {"rows": len(self.index), "node": ray.get_runtime_context().get_node_id(), "pid": os.getpid(),
                "ann": self.index.ann is not None}

    def search(self, query: np.ndarray, k: int, where: Filter | None, exact: bool) -> ShardHits:
        return shard_answer(self.index, query, k, where, exact)

    def vectors_of(self, ids: np.ndarray) -> np.ndarray:
        return self.index.vectors[ids]


class RayShardedGallery(ShardedGallery):
    """A sharded case whose search runs in one Ray actor per shard (see the module docstring)."""

    @classmethod
    def open(cls, case: str | Path, ann: bool = True, image_root: str | Path | None = None,
             address: str | None = "auto", cpus_per_shard: float = 0.0) -> "RayShardedGallery":
        """Open ``case`` (a sharded case) with its shards in actors on the Ray cluster at ``address``
        (``connect``); ``cpus_per_shard``: CPUs each actor reserves (0: none, it only answers searches)."""
        import ray

        case = Path(case).resolve()
        manifest = read_manifest(case)
        if not manifest.get("shards"):
            raise GalleryIndexError(f"{case}: not a sharded index (build it with --shards N to serve it from "
                                    f"Ray actors)")
        connect(address)
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        nodes = sorted(n["NodeID"] for n in ray.nodes() if n.get("Alive"))
        actor = ray.remote(ShardServer)
        actors = [actor.options(num_cpus=cpus_per_shard, max_restarts=-1, max_task_retries=-1,
                                scheduling_strategy=NodeAffinitySchedulingStrategy(nodes[i % len(nodes)], soft=False)
                                ).remote(str(case / s), ann)
                  for i, s in enumerate(manifest["shards"])]  # they open while the driver reads
        shards = []
        for name in manifest["shards"]:
            s = GalleryIndex.open(case / name, ann=False, image_root=image_root)
            if s.identity != manifest["identity"] or s.attribute_names != manifest["attributes"]["names"]:
                raise GalleryIndexError(f"{case / name}: built with another model or attribute head than {case}")
            s.vectors = s.vectors[:0]  # held by its actor
            shards.append(s)
        infos = ray.get([a.info.remote() for a in actors])
        for name, s, info in zip(manifest["shards"], shards, infos):
            if info["rows"] != len(s):
                raise GalleryIndexError(f"{case / name}: changed while it was opened ({len(s)} rows here, "
                                        f"{info['rows']} in its actor); open it again")
        out = cls(case, manifest, shards, None if image_root is None else Path(image_root))
        out.actors, out.placement = actors, infos
        return out

    def _shard_hits(self, query: np.ndarray, k: int, where: Filter | None, exact: bool) -> list[ShardHits]:
        import ray

        q = np.asarray(query, np.float32)
        return [ShardHits(*h) for h in ray.get([a.search.remote(q, k, where, exact) for a in self.actors])]

    def _ask_vectors(self, shard: int, ids: np.ndarray):
        """The vectors are asked of the actor holding the shard."""
        return self.actors[shard].vectors_of.remote(ids)

    def _answer(self, ask) -> np.ndarray:
        import ray

        return ray.get(ask)

    def close(self) -> None:
        """End the actors (they also end when this gallery is dropped)."""
        import ray

        for a in getattr(self, "actors", []):
            ray.kill(a)
        self.actors = []
