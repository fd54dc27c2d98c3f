"""Search by description on PETA-ReID (docs/METHODS.md#search-by-description).

    python benchmarks/bench_describe.py [--data-root DATA_ROOT] [--cache CACHE] [--sources SOURCE ...] [--out STEM]

For every identity of a set of images, a description is made from its ground-truth labels: k
attributes (k = 3, 5, 8) drawn at random (seed fixed), ceil(k / 2) from the labels it has and the
rest from those it lacks (colour negatives left out: a witness says "red top", not "top not
purple"), written in words (``xreid.explain.describe.terms_text``) and read back by the parser.
Every image of the set is ranked by how well its calibrated attribute probabilities (quantised as
the index stores them) fit the description (``xreid.explain.description_score``); mAP and R1 over
identities. Beside it: random ranking (mean of 5 orders), the head's raw (uncalibrated)
probabilities, and the oracle that ranks by the images' ground-truth labels (number of described
terms met, ties in random order: what a perfect attribute recogniser gives).

1. Choice on PETA-ReID-val (its query and gallery images), with OMZ 0277's attribute head fitted on
   the PETA-ReID-val train split and 70 % of the attribute-only images and calibrated on the other
   30 % only (no validation image in its fit or calibration; 0277 never saw PETA). The bundled model
   saw the validation identities in training, so its figures there are shown but not used. First
   the look-alikes (each image's probabilities averaged, weight a, with those of its m nearest
   images of the set in the model's embedding, as the index does), mean over three description
   seeds; then, on the chosen look-alikes, the combination rule and the weight of unreliable
   attributes.
2. Test (PETA-ReID test images, the three sets pooled): the library's setting with the bundled head
   and with 0277's head as ``xreid attributes fit`` makes it (look-alikes found among the pooled
   test images in each model's own embedding), beside each image read alone and the raw scores;
   k = 3, 5, 8; then k = 5 with 1 % and 5 % of the description's words replaced by a synonym or a
   typo from a fixed list.
3. Image + description ("search by this image" from a description search): per test set, each
   query image's ranking by distance alone, with the description as a filter (rows whose
   described terms are not all likely dropped), or as a re-ranking term d - beta log(score); the
   mode and beta chosen on PETA-ReID-val with 0277.
4. Latency of a description search (5 terms, top 10 with evidence) on a synthetic index of
   ``--rows`` rows (ranking by look-alike codes), without and with a camera / time filter; and the
   cost of finding every row's look-alikes when a build finishes (exact, and through the ANN).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
from common import M0277, Report, labelled_models, omz_model, parse, parser, relative

from xreid.data.labels import label_matrix
from xreid.data.peta import EXPLANATION_ATTRIBUTES
from xreid.data.protocol import load_protocol
from xreid.data.vocabulary import words
from xreid.distance import cosine_distance, l2_normalise
from xreid.evaluation.metrics import evaluate_distances
from xreid.evaluation.attributes import COMBINE_RULES
from xreid.explain.attribute_head import AttributeHead
from xreid.evaluation.attributes import reliability
from xreid.explain.describe import parse_description, terms_text
from xreid.explain.description_score import (LOOKALIKE_WEIGHT, LOOKALIKES, RULE, RULES, UNRELIABLE_WEIGHT,
                                            description_scores, lookalike_smoothed, term_weights)
from xreid.index.lookalikes import nearest_rows
from xreid.index.gallery import decode_probabilities, encode_probabilities
from xreid.models.concat import ConcatEmbedder
from xreid.models.loading import BUNDLED_HEAD, load_embedder, model_head_path
from xreid.paths import default_data_root
from xreid.workflows.attributes import fit_calibrated, fit_combined, fit_head
from xreid.workflows.embedding_cache import CachedEmbedder, cached_embeddings

SEED = 0
#: the embedding cache's default folder
CACHE = default_data_root() / "describe_cache"
WEIGHTS = (0.0, 0.25, 0.5, 1.0)
#: look-alikes compared on validation: m nearest images, their weight a (m = 0: each image alone)
LOOKALIKE_M = (1, 2, 4, 8, 16)
LOOKALIKE_A = (0.25, 0.5, 0.75)
VAL_SEEDS = (0, 1, 2)
BETAS = (0.02, 0.05, 0.1, 0.2, 0.5)

#: what a witness may say instead of the vocabulary's word (synonyms), and typos of it
SUBSTITUTES = {
    "woman": ["lady", "female", "womn"], "man": ["guy", "male", "mna"], "backpack": ["rucksack", "backpak"],
    "bag": ["shoulder bag", "bga"], "plastic": ["plastik"], "hat": ["cap", "hta"], "scarf": ["muffler", "scraf"],
    "sunglasses": ["shades", "sunglases"], "jacket": ["coat", "jakcet"], "jeans": ["denim", "jeens"],
    "trousers": ["pants", "trousres"], "shorts": ["shrots"], "skirt": ["skrit"], "top": ["shirt", "tpo"],
    "sneakers": ["trainers", "sneekers"], "sandals": ["sandles"], "shoes": ["shoe", "shoees"],
    "leather": ["lether"], "tee": ["t-shirt", "tshirt"], "logo": ["lgoo"], "plaid": ["checked", "pliad"],
    "stripes": ["striped", "stirpes"], "formal": ["smart", "fromal"], "casual": ["casaul"],
    "black": ["blakc"], "blue": ["navy", "bleu"], "brown": ["beige", "borwn"], "green": ["gren"],
    "grey": ["gray", "gery"], "orange": ["ornage"], "pink": ["pnik"], "purple": ["violet", "purpel"],
    "red": ["maroon", "rde"], "white": ["whtie"], "yellow": ["yelow"], "long": ["lnog"], "hair": ["hiar"],
    "sleeves": ["sleves"], "elderly": ["old", "elderyl"], "young": ["yuong"], "nothing": ["nohting"],
    "accessories": ["accesories"], "carrying": ["carying"], "no": ["without"], "something": ["somthing"],
}


def describe_identity(labels: np.ndarray, names: list[str], k: int, rng) -> list[tuple[str, bool]]:
    """k (attribute, wanted) from one identity's labels: ceil(k/2) present, the rest absent."""
    pos = [a for a in range(len(names)) if labels[a]]
    neg = [a for a in range(len(names)) if not labels[a] and not words(names[a]).exclusive]
    n_pos = min(len(pos), math.ceil(k / 2))
    chosen = list(rng.choice(pos, n_pos, replace=False)) if n_pos else []
    chosen += list(rng.choice(neg, min(len(neg), k - n_pos), replace=False))
    return [(names[a], bool(labels[a])) for a in chosen]


def add_noise(text: str, rate: float, rng) -> str:
    """Replace each word with a listed substitute with probability ``rate``."""
    out = []
    for word in text.split(" "):
        core, tail = word.rstrip(","), word[len(word.rstrip(",")):]
        if core in SUBSTITUTES and rng.random() < rate:
            core = SUBSTITUTES[core][rng.integers(len(SUBSTITUTES[core]))]
        out.append(core + tail)
    return " ".join(out)


class Images:
    """A pooled set of labelled images: identities, labels, per-head probabilities."""

    def __init__(self, records, names):
        self.records = records
        self.labels, labelled = label_matrix(records, names)
        assert labelled.all()
        self.pids = np.array([r.pid for r in records])
        self.names = names
        first = {}
        for i, p in enumerate(self.pids):
            first.setdefault(p, i)
        self.identities = list(first)
        self.id_labels = self.labels[[first[p] for p in self.identities]]


def quantised(p: np.ndarray) -> np.ndarray:
    return decode_probabilities(encode_probabilities(p)).astype(np.float64)


def with_lookalikes(p: np.ndarray, neighbours: np.ndarray, weight: float) -> np.ndarray:
    """What the index ranks by: the stored (quantised) probabilities smoothed over the look-alikes, stored again."""
    return quantised(lookalike_smoothed(quantised(p), neighbours, weight))


def lookalikes_of(f: np.ndarray, m: int) -> np.ndarray:
    return nearest_rows(l2_normalise(f.astype(np.float64)).astype(np.float32), m)


def rank_metrics(scores: np.ndarray, images: Images, pids: list[str], rng) -> tuple[float, float]:
    """mAP, R1 of descriptions' scores (D x N, higher first), ties in random order."""
    jitter = rng.random(scores.shape) * 1e-9
    dist = -(scores + jitter)
    m = evaluate_distances(dist, np.array(pids), images.pids, np.full(len(pids), "q"), np.full(len(images.pids), "g"))
    return 100 * m.mAP, 100 * m.cmc[0]


def descriptions(images: Images, k: int, noise: float = 0.0, seed: int = SEED):
    """Per identity: the terms read back from the (noisy) words, and how many were not read back exactly."""
    rng = np.random.default_rng(seed)
    noise_rng = np.random.default_rng(seed + 1)
    out, misread = [], 0
    for row in images.id_labels:
        truth = describe_identity(row, images.names, k, rng)
        text = add_noise(terms_text(truth, images.names), noise, noise_rng)
        d = parse_description(text, images.names)
        got = [(t.name, t.wanted) for t in d.terms]
        misread += sorted(got) != sorted(truth)
        out.append(got)
    return out, misread


def score_all(probs: np.ndarray, descs, names, reliab, rule, weight) -> np.ndarray:
    pos = {n: i for i, n in enumerate(names)}
    out = np.zeros((len(descs), len(probs)))
    for d, terms in enumerate(descs):
        idx = [pos[n] for n, _ in terms]
        w = term_weights(None if reliab is None else reliab[idx], len(idx), weight)
        out[d] = description_scores(probs[:, idx], [w_ for _, w_ in terms], w, rule)
    return out


def oracle_scores(images: Images, descs) -> np.ndarray:
    pos = {n: i for i, n in enumerate(images.names)}
    out = np.zeros((len(descs), len(images.labels)))
    for d, terms in enumerate(descs):
        idx = [pos[n] for n, _ in terms]
        out[d] = (images.labels[:, idx] == np.array([w for _, w in terms])).sum(1)
    return out


def random_metrics(images: Images, descs, reps: int = 5) -> tuple[float, float]:
    vals = [rank_metrics(np.zeros((len(descs), len(images.labels))), images, images.identities,
                         np.random.default_rng(100 + r)) for r in range(reps)]
    return tuple(np.mean(vals, axis=0))


def clean_split(root) -> tuple[list, list]:
    """(fit, calibration) records of a head that sees no validation image: PETA-ReID-val train + 70 %
    of the attribute-only images, and the other 30 %."""
    from xreid.data.splits import CALIBRATION_SHARE, held_out

    val = load_protocol("peta-reid-val", root)
    fit = val.train + [r for r in val.attribute_only if not held_out(r.path, CALIBRATION_SHARE)]
    return fit, [r for r in val.attribute_only if held_out(r.path, CALIBRATION_SHARE)]


def clean_features(embedder, root, cache) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(features, labels) of the fit images, (features, labels) of the calibration images] (``clean_split``)."""
    image_root = load_protocol("peta-reid-val", root).image_root
    out = []
    for part in clean_split(root):
        f, kept, skipped = cached_embeddings(embedder, image_root, [r.path for r in part], cache, progress=False)
        assert not skipped and kept == [r.path for r in part], f"{len(skipped)} images unreadable"
        out.append((f, label_matrix(part, list(EXPLANATION_ATTRIBUTES))[0]))
    return out


def clean_head(embedder, root, cache) -> AttributeHead:
    """The model's layer fitted on PETA-ReID-val train + 70 % attribute-only, calibrated on the other 30 % only."""
    (f_fit, y_fit), (f_cal, y_cal) = clean_features(embedder, root, cache)
    return fit_calibrated(np.concatenate([f_fit, f_cal]), np.concatenate([y_fit, y_cal]),
                          np.arange(len(f_fit) + len(f_cal)) < len(f_fit), list(EXPLANATION_ATTRIBUTES), 300,
                          {"source": "val train + 70 % attribute-only"})


def clean_0277_head(m0277, root, cache) -> AttributeHead:
    return clean_head(m0277, root, cache)


def clean_combined_head(parts, root, cache, rule: str) -> AttributeHead:
    """The parts' clean layers combined per attribute by ``rule`` into one layer on their concatenation
    (``fit_combined``, as ``xreid attributes fit --combine`` does), calibrated there again."""
    feats = [clean_features(e, root, cache) for e in parts]
    (_, y_fit), (_, y_cal) = feats[0]
    return fit_combined([np.concatenate([f[0][0], f[1][0]]) for f in feats], np.concatenate([y_fit, y_cal]),
                        np.arange(len(y_fit) + len(y_cal)) < len(y_fit), list(EXPLANATION_ATTRIBUTES), rule, 300,
                        {"source": f"{rule} of {len(parts)} clean layers"})


def probabilities(embedder, head: AttributeHead, records, root, cache, raw: bool = False) -> np.ndarray:
    f, kept, skipped = cached_embeddings(embedder, root, [r.path for r in records], cache, progress=False)
    assert not skipped and kept == [r.path for r in records]
    return (head.predict(f) if raw else head.calibrated(f)), f


def image_plus_description(proto, embedder, head, root, cache, mode, beta, k=5, seed=SEED) -> tuple[float, float]:
    """Mean over test sets of mAP / R1: each query's gallery ranked by distance, with its identity's
    description as a filter or re-ranking term (mode 'image', 'filter', 'rerank')."""
    names = head.names
    maps, r1s = [], []
    for ts in proto.test_sets:
        q_p, q_f = probabilities(embedder, head, ts.query, root, cache)
        g_p, g_f = probabilities(embedder, head, ts.gallery, root, cache)
        q_lab, _ = label_matrix(ts.query, names)
        rng = np.random.default_rng(seed)
        dist = cosine_distance(l2_normalise(q_f), l2_normalise(g_f), normalised=True).astype(np.float64)
        if mode != "image":
            g_q = quantised(g_p)
            for i in range(len(ts.query)):
                terms = describe_identity(q_lab[i], names, k, rng)
                idx = [names.index(n) for n, _ in terms]
                wanted = [w for _, w in terms]
                w = term_weights(head.reliability[idx], len(idx), UNRELIABLE_WEIGHT)
                if mode == "filter":  # every reliable term likely as described (as Filter.attributes)
                    q = np.where(wanted, g_q[:, idx], 1 - g_q[:, idx])[:, w >= 1]
                    dist[i, ~(q >= 0.5).all(1)] = np.inf
                else:
                    s = description_scores(g_q[:, idx], wanted, w, RULE)
                    dist[i] -= beta * np.log(np.maximum(s, 1e-12))
        if mode == "filter":  # a filtered-out true match is never found (not ranked last)
            m = _filtered_metrics(dist, ts)
        else:
            m = evaluate_distances(dist, [r.pid for r in ts.query], [r.pid for r in ts.gallery],
                                   [r.cam for r in ts.query], [r.cam for r in ts.gallery])
        maps.append(100 * m.mAP)
        r1s.append(100 * m.cmc[0])
    return float(np.mean(maps)), float(np.mean(r1s))


def _filtered_metrics(dist, ts):
    from xreid.evaluation.metrics import average_precision

    class M:
        pass

    aps, r1 = [], []
    g_pids = np.array([r.pid for r in ts.gallery])
    for i, q in enumerate(ts.query):
        order = np.argsort(dist[i], kind="stable")
        kept = order[np.isfinite(dist[i][order])]
        rel = g_pids == q.pid
        n_rel = rel.sum()
        if n_rel == 0:
            continue
        hits = rel[kept]
        ap = average_precision(hits) * hits.sum() / n_rel  # missing true matches count as never found
        aps.append(ap)
        r1.append(bool(hits[:1].any()))
    m = M()
    m.mAP, m.cmc = float(np.mean(aps)), np.array([np.mean(r1)])
    return m


def latency(rows: int, report: Report, reps: int = 200) -> dict:
    """p50 / p99 ms of ``search_description`` (5 terms, k 10) on a synthetic in-memory index."""
    from xreid.data.peta import EXPLANATION_ATTRIBUTES
    from xreid.explain.describe import Term
    from xreid.index.describe import search_description
    from xreid.index.gallery import Filter, GalleryIndex

    names = list(EXPLANATION_ATTRIBUTES)
    rng = np.random.default_rng(0)
    codes = np.ascontiguousarray(encode_probabilities(rng.beta(0.4, 1.2, (len(names), rows))))
    cams = rng.integers(0, 8, rows).astype(np.int32)
    times = np.sort(rng.random(rows) * 86400 * 7)
    manifest = {"attributes": {"names": names}, "segments": [], "columns": {"camera": "string", "time": "time"},
                "embedding_dim": 256, "identity": {"model": "synthetic"}}
    vectors = np.zeros((rows, 256), np.float32)  # not read by a description search (never touched: no memory)
    index = GalleryIndex(Path("synthetic"), manifest, vectors, codes, np.array([f"p/{i}.jpg" for i in range(rows)]),
                         times, {"camera": (np.array([str(c) for c in range(8)]), cams)},
                         {"pack": np.full(rows, -1, np.int32), "offset": np.zeros(rows, np.int64),
                          "length": np.zeros(rows, np.int64)}, None)
    # ranked by look-alike codes, as a built index is (neighbours drawn at random: the codes' spread is
    # what matters for the search, and averaging narrows it, which makes the pruning work harder)
    from xreid.index.lookalikes import lookalike_codes

    index.lookalike_codes = lookalike_codes(codes, rng.integers(0, rows, (rows, LOOKALIKES)).astype(np.int32))
    rel = np.full(len(names), 0.8)
    rel[::7] = 0.55
    filters = {"none": None, "camera 3": Filter(camera="3"),
               "camera 3, after median time": Filter(camera="3", after=float(np.median(times)))}
    smoothed = index.lookalike_codes
    out = {}
    for codes_label, ranked in (("look-alike codes", smoothed), ("own codes", None)):
        index.lookalike_codes = ranked
        for label, where in filters.items():
            ms, scored = [], []
            for r in range(reps):
                pick = rng.choice(len(names), 5, replace=False)
                terms = [Term(names[a], bool(rng.random() < 0.6), names[a]) for a in pick]
                t0 = time.perf_counter()
                res = search_description(index, terms, 10, where, rel)
                ms.append(1000 * (time.perf_counter() - t0))
                scored.append(res.scored)
                assert len(res) == 10
            out[f"{codes_label}: {label}"] = {"p50_ms": round(float(np.median(ms)), 2),
                                              "p99_ms": round(float(np.percentile(ms, 99)), 2),
                                              "kept": int(res.candidates), "scored_median": int(np.median(scored))}
    report.table(["codes: filter", "rows kept", "rows scored in full (median)", "p50 ms", "p99 ms"],
                 [[k, f"{v['kept']:,}", f"{v['scored_median']:,}", f"{v['p50_ms']:.1f}", f"{v['p99_ms']:.1f}"]
                  for k, v in out.items()])
    return out


def lookalike_cost(exact_rows: int, ann_rows: int, report: Report, dim: int = 256) -> dict:
    """Seconds to find every row's look-alikes (what a build's end adds) on identity-structured
    synthetic unit vectors (people seen about 4 times): exact on ``exact_rows``, and through the
    ANN structure on ``ann_rows`` (its build timed apart: an index of that size has it anyway)."""
    from xreid.index.ann import AnnIndex

    out = {}
    for label, n in (("exact", exact_rows), ("ann", ann_rows)):
        rng = np.random.default_rng(1)
        centres = rng.standard_normal((n // 4, dim)).astype(np.float32)
        x = centres[rng.integers(0, len(centres), n)] + 0.5 * rng.standard_normal((n, dim)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        ann, build = None, 0.0
        if label == "ann":
            t0 = time.perf_counter()
            ann = AnnIndex.build(x)
            build = time.perf_counter() - t0
        t0 = time.perf_counter()
        nb = nearest_rows(x, LOOKALIKES, ann=ann)
        secs = time.perf_counter() - t0
        recall = None
        if ann is not None:  # against exact search on a sample of rows
            sample = rng.choice(n, 500, replace=False)
            sim = x[sample] @ x.T
            sim[np.arange(len(sample)), sample] = -np.inf
            exact = np.argsort(-sim, axis=1)[:, :LOOKALIKES]
            recall = float(np.mean([len(np.intersect1d(a, b)) / LOOKALIKES for a, b in zip(nb[sample], exact)]))
        out[label] = {"rows": n, "seconds": round(secs, 1), "ms_per_row": round(1000 * secs / n, 3),
                      "ann_build_s": round(build, 1), "recall": recall}
    report.table(["search", "rows", "seconds", "ms per row", "ANN build s", "recall of the look-alikes"],
                 [[k, f"{v['rows']:,}", f"{v['seconds']:.1f}", f"{v['ms_per_row']:.3f}",
                   f"{v['ann_build_s']:.1f}" if k == "ann" else "", "" if v["recall"] is None else f"{v['recall']:.3f}"]
                  for k, v in out.items()])
    return out


TEST_CASES = ((3, 0.0), (5, 0.0), (8, 0.0), (5, 0.01), (5, 0.05))


def table_on_test(heads: dict, images: Images, proto, cache, report: Report, cases) -> dict:
    """Per (k, noise) of ``cases``: each head's mAP / R1 with the library's look-alikes, each image
    alone and raw, beside random and the oracle; printed as a table, returned as figures."""
    names = images.names
    probs = {}
    for label, (emb, head) in heads.items():
        p, f = probabilities(emb, head, images.records, proto.image_root, cache)
        raw, _ = probabilities(emb, head, images.records, proto.image_root, cache, raw=True)
        probs[label] = (with_lookalikes(p, lookalikes_of(f, LOOKALIKES), LOOKALIKE_WEIGHT), quantised(p),
                        quantised(raw), head.reliability)
    rows, fig = [], {}
    for k, noise in cases:
        descs, misread = descriptions(images, k, noise)
        ids = images.identities
        oracle = rank_metrics(oracle_scores(images, descs), images, ids, np.random.default_rng(1))
        rand = random_metrics(images, descs)
        entry = {"oracle": oracle, "random": rand, "misread_descriptions": misread}
        cells = [k, f"{100 * noise:g} %", misread]
        for label, (p, alone, raw, rel) in probs.items():
            cal, own, unc = (rank_metrics(score_all(x, descs, names, rel, RULE, UNRELIABLE_WEIGHT), images, ids,
                                          np.random.default_rng(1)) for x in (p, alone, raw))
            entry[label] = {"calibrated": cal, "alone": own, "raw": unc, "of_oracle": cal[0] / oracle[0],
                            "alone_of_oracle": own[0] / oracle[0]}
            cells += [f"{cal[0]:.1f} / {cal[1]:.1f} ({100 * cal[0] / oracle[0]:.0f} %)",
                      f"{own[0]:.1f} / {own[1]:.1f} ({100 * own[0] / oracle[0]:.0f} %)", f"{unc[0]:.1f} / {unc[1]:.1f}"]
        cells += [f"{rand[0]:.1f} / {rand[1]:.1f}", f"{oracle[0]:.1f} / {oracle[1]:.1f}"]
        rows.append(cells)
        fig[f"k{k}_noise{noise}"] = entry
    report.table(["k", "words replaced", "misread"]
                 + [c for label in heads for c in (f"{label} mAP / R1 (of oracle)", f"{label}, each image alone",
                                                   f"{label} raw, alone")] + ["random", "oracle"], rows)
    return fig


#: the OMZ re-id models whose attribute layers are compared as description sources (never saw PETA)
OMZ_SOURCES = ("0277", "0286", "0287")
#: attribute sources compared on validation: one model's layer, the layer on the three concatenated,
#: and the three models' layers combined per attribute (``combine_heads``: mean, or the best by AP on
#: the calibration images)
SOURCES = OMZ_SOURCES + ("concat",) + COMBINE_RULES


#: suffix of a ``--source-model``'s own head (the one its training wrote beside it) as a source
OWN = " own head"


def source_head(name: str, models: dict, root, cache, own: dict[str, Path] | None = None):
    """(embedder, head) of an attribute source: ``SOURCES``, a ``--source-model`` label (a clean layer
    fitted on its embedding) or that label + ``OWN`` (the head its training wrote beside it, ``own``)."""
    if name.endswith(OWN):
        label = name[:-len(OWN)]
        return models[label], AttributeHead.load(own[label])
    if name in models:
        return models[name], clean_head(models[name], root, cache)
    parts = [models[m] for m in OMZ_SOURCES]
    concat = ConcatEmbedder(parts)
    if name == "concat":
        return concat, clean_head(concat, root, cache)
    return concat, clean_combined_head(parts, root, cache, name)


def val_descriptions(val) -> tuple[Images, list, list[float]]:
    """The validation images, their 5-term descriptions for each of ``VAL_SEEDS``, and the oracle's mAP on each."""
    images = Images(val.test_images(), list(EXPLANATION_ATTRIBUTES))
    seeded = [descriptions(images, 5, seed=s)[0] for s in VAL_SEEDS]
    return images, seeded, [rank_metrics(oracle_scores(images, d), images, images.identities,
                                         np.random.default_rng(1))[0] for d in seeded]


def source_metrics(emb, head, val, cache, images: Images, seeded, oracles) -> dict:
    """One source on validation: mean balanced accuracy over the attributes, and (mAP, R1, of the oracle's
    mAP) of the descriptions, mean over the seeds, with the library's look-alikes and each image alone."""
    p, f = probabilities(emb, head, images.records, val.image_root, cache)
    entry = {"balanced_accuracy": float(np.nanmean(reliability(head.logits(f), images.labels)))}
    for label, probs_ in (("lookalikes", with_lookalikes(p, lookalikes_of(f, LOOKALIKES), LOOKALIKE_WEIGHT)),
                          ("alone", quantised(p))):
        vals = [rank_metrics(score_all(probs_, d, images.names, head.reliability, RULE, UNRELIABLE_WEIGHT),
                             images, images.identities, np.random.default_rng(1)) for d in seeded]
        entry[label] = (float(np.mean([v[0] for v in vals])), float(np.mean([v[1] for v in vals])),
                        float(np.mean([v[0] / o for v, o in zip(vals, oracles)])))
    return entry


def compare_sources(names_: list[str], models: dict, val, root, cache, report: Report,
                    own: dict[str, Path] | None = None) -> dict:
    """Validation: each source's ``source_metrics`` (k = 5, mean of ``VAL_SEEDS``), as a table."""
    images, seeded, oracles = val_descriptions(val)
    rows, out = [], {}
    for name in names_:
        report.progress(f"source {name} ...")
        out[name] = entry = source_metrics(*source_head(name, models, root, cache, own), val, cache, images, seeded,
                                           oracles)
        rows.append([name, f"{100 * entry['balanced_accuracy']:.1f}"]
                    + [f"{entry[x][0]:.2f} / {entry[x][1]:.2f} ({100 * entry[x][2]:.1f} %)"
                       for x in ("lookalikes", "alone")])
    report.print(f"Attribute sources (heads without val images), rule {RULE}, unreliable weight {UNRELIABLE_WEIGHT}, "
                 f"k = 5, mean of description seeds {VAL_SEEDS} (oracle mAP {np.mean(oracles):.1f}):\n")
    report.table(["source", "mean balanced accuracy % (val images)", f"mAP / R1 (of oracle), look-alikes m "
                  f"{LOOKALIKES} a {LOOKALIKE_WEIGHT}", "each image alone"], rows)
    return out


def sources(names_: list[str], val, test, root, cache, report: Report, extra: dict[str, str] | None = None) -> dict:
    """``--sources``: the validation comparison, then the chosen source and 0277 on test. ``extra``
    ({label: model}, ``--source-model``): more models compared, each with a clean layer on its
    embedding and, when its training wrote one, its own head (neither may have seen a validation image)."""
    models = {m: load_embedder(omz_model(f"person-reidentification-retail-{m}")) for m in OMZ_SOURCES}
    own = {}
    for label, model in (extra or {}).items():
        models[label] = load_embedder(model)
        names_ = names_ + [label]
        if model_head_path(model).is_file():
            own[label] = model_head_path(model)
            names_.append(label + OWN)
    report.print(f"## Attribute sources on PETA-ReID-val ({len(val.test_images())} images)\n")
    val_fig = compare_sources(names_, models, val, root, cache, report, own)
    chosen = max(val_fig, key=lambda n: val_fig[n]["lookalikes"][0])
    report.print(f"\nchosen on validation: {chosen}\n")
    heads = {name: source_head(name, models, root, cache, own) for name in dict.fromkeys(["0277", chosen])}
    heads["0277, attributes fit"] = (models["0277"], fit_head(CachedEmbedder(models["0277"], test.image_root, cache,
                                                                             False), root, "peta-reid"))
    if chosen == "concat":  # as `xreid attributes fit --model a,b,c` makes it (calibrated on the val sets too)
        concat = heads[chosen][0]
        heads["concat, attributes fit"] = (concat, fit_head(CachedEmbedder(concat, test.image_root, cache, False),
                                                            root, "peta-reid", model_name=",".join(OMZ_SOURCES)))
    images = Images(test.test_images(), list(EXPLANATION_ATTRIBUTES))
    report.print(f"## PETA-ReID test ({len(images.records)} images of the 3 sets pooled, {len(images.identities)} "
                 f"identities), heads fitted and calibrated without validation images unless named\n")
    return {"val": val_fig, "chosen": chosen,
            "test": table_on_test(heads, images, test, cache, report, ((3, 0.0), (5, 0.0), (8, 0.0)))}


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--cache", type=Path, default=CACHE, help="embedding cache folder, one file per model "
                    "(default: beside the default data root, outside the checkout, so it outlives a worktree)")
    ap.add_argument("--sources", nargs="+", choices=SOURCES, default=None, metavar="SOURCE",
                    help=f"only compare these attribute sources ({', '.join(SOURCES)}) on PETA-ReID-val, then "
                         "measure the best and 0277 on PETA-ReID test (k = 3, 5, 8)")
    ap.add_argument("--source-model", nargs="+", default=[], metavar="LABEL=MODEL",
                    help="with --sources: more models compared as attribute sources (a clean layer on the "
                         "embedding, and the model's own head where its training wrote one); they must not have "
                         "seen a PETA-ReID-val image")
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows of the synthetic index for the latency")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--lookalike-rows", type=int, nargs=2, default=(20_000, 100_000), metavar=("EXACT", "ANN"),
                    help="rows of the synthetic sets on which finding the look-alikes is timed")
    args = parse(ap)
    report = Report(args.out)
    root, cache = args.data_root, args.cache
    figures: dict = {"seed": SEED, "cache": relative(cache)}
    val = load_protocol("peta-reid-val", root)
    test = load_protocol("peta-reid", root)
    bundled = load_embedder("default")
    head_b = AttributeHead.load(BUNDLED_HEAD)
    m0277 = load_embedder(M0277)
    names = head_b.names
    if args.sources:
        figures["sources"] = sources(args.sources, val, test, root, cache, report,
                                     labelled_models(args.source_model, "--source-model"))
        report.save(figures)
        return

    # -- 1. the choice, on validation --
    report.progress("0277 head without validation images ...")
    head_clean = clean_0277_head(m0277, root, cache)
    val_images = Images(val.test_images(), names)
    report.print(f"## 1. Choice on PETA-ReID-val ({len(val_images.records)} images, {len(val_images.identities)} "
                 f"identities, k = 5)\n")
    descs, misread = descriptions(val_images, 5)
    report.print(f"descriptions not read back exactly: {misread} (a label set the parser calls a contradiction, "
                 f"e.g. two age groups, loses those terms)\n")
    oracle = rank_metrics(oracle_scores(val_images, descs), val_images, val_images.identities, np.random.default_rng(1))

    # look-alikes: m and a, 0277, the library's rule, mean over description seeds
    p_val, f_val = probabilities(m0277, head_clean, val_images.records, val.image_root, cache)
    nb_val = lookalikes_of(f_val, max(LOOKALIKE_M))
    seeded = [descriptions(val_images, 5, seed=s)[0] for s in VAL_SEEDS]
    seeded_oracle = [rank_metrics(oracle_scores(val_images, d), val_images, val_images.identities,
                                  np.random.default_rng(1))[0] for d in seeded]
    grid = {}
    for m, a in [(0, 0.0)] + [(m, a) for m in LOOKALIKE_M for a in LOOKALIKE_A]:
        probs_ma = with_lookalikes(p_val, nb_val[:, :m], a)
        vals = [rank_metrics(score_all(probs_ma, d, names, head_clean.reliability, RULE, UNRELIABLE_WEIGHT),
                             val_images, val_images.identities, np.random.default_rng(1)) for d in seeded]
        grid[(m, a)] = (float(np.mean([v[0] for v in vals])), float(np.mean([v[1] for v in vals])),
                        float(np.mean([v[0] / o for v, o in zip(vals, seeded_oracle)])))
    report.print(f"Look-alikes, 0277 (head without val images), rule {RULE}, mean of description seeds {VAL_SEEDS} "
                 f"(oracle mAP {np.mean(seeded_oracle):.1f}): mAP / R1 (of oracle mAP)\n")
    report.table(["m \\ a"] + [str(a) for a in LOOKALIKE_A],
                 [["0 (each image alone)", f"{grid[(0, 0.0)][0]:.2f} / {grid[(0, 0.0)][1]:.2f} "
                                           f"({100 * grid[(0, 0.0)][2]:.1f} %)"] + [""] * (len(LOOKALIKE_A) - 1)]
                 + [[str(m)] + [f"{grid[(m, a)][0]:.2f} / {grid[(m, a)][1]:.2f} ({100 * grid[(m, a)][2]:.1f} %)"
                                for a in LOOKALIKE_A] for m in LOOKALIKE_M])
    best_la = max(grid, key=lambda x: grid[x][0])
    report.print(f"\nbest: m {best_la[0]}, a {best_la[1]}; the library uses m {LOOKALIKES}, a {LOOKALIKE_WEIGHT}\n")
    figures["val_lookalikes"] = {f"{m}/{a}": v for (m, a), v in grid.items()}
    figures["val_lookalikes_best"] = list(best_la)

    rows, choice = [], {}
    for label, emb, head in (("0277 (head without val images)", m0277, head_clean),
                             ("bundled (saw val identities: optimistic)", bundled, head_b)):
        p, f = probabilities(emb, head, val_images.records, val.image_root, cache)
        p = with_lookalikes(p, lookalikes_of(f, LOOKALIKES), LOOKALIKE_WEIGHT)
        for rule in RULES:
            for w in WEIGHTS:
                if rule in ("product",):  # ranks exactly as geomean; listed once
                    continue
                m = rank_metrics(score_all(p, descs, names, head.reliability, rule, w), val_images,
                                 val_images.identities, np.random.default_rng(1))
                rows.append([label, rule, w, f"{m[0]:.1f}", f"{m[1]:.1f}", f"{100 * m[0] / oracle[0]:.0f} %"])
                if label.startswith("0277"):
                    choice[(rule, w)] = m[0]
    report.print(f"Rule and unreliable weight, description seed {SEED}, on the library's look-alikes:\n")
    report.table(["head", "rule", "unreliable weight", "mAP", "R1", "of oracle mAP"], rows)
    best = max(choice, key=choice.get)
    report.print(f"\noracle mAP {oracle[0]:.1f} / R1 {oracle[1]:.1f}; best with 0277: {best[0]}, unreliable weight "
                 f"{best[1]} (mAP {choice[best]:.1f}); the library uses {RULE}, {UNRELIABLE_WEIGHT}")
    figures["val"] = {"oracle": oracle, "by_rule_weight_0277": {f"{r}/{w}": v for (r, w), v in choice.items()},
                      "best": list(best)}

    # image + description: filter or re-rank, on validation with 0277 (clean head)
    report.print("\nImage + description on PETA-ReID-val, 0277 (mean over the 3 sets):\n")
    mode_rows, modes = [], {}
    for mode, beta in [("image", 0.0), ("filter", 0.0)] + [("rerank", b) for b in BETAS]:
        m = image_plus_description(val, m0277, head_clean, val.image_root, cache, mode, beta)
        modes[(mode, beta)] = m
        mode_rows.append([mode, beta if mode == "rerank" else "", f"{m[0]:.1f}", f"{m[1]:.1f}"])
    report.table(["mode", "beta", "mAP", "R1"], mode_rows)
    best_mode = max(modes, key=lambda x: modes[x][0])
    report.print(f"\nbest on val: {best_mode[0]}" + (f", beta {best_mode[1]}" if best_mode[0] == "rerank" else ""))
    figures["val_image_plus_description"] = {f"{m}/{b}": v for (m, b), v in modes.items()}

    # -- 2. test --
    report.progress("0277 head as `xreid attributes fit` makes it ...")
    head_0277 = fit_head(CachedEmbedder(m0277, test.image_root, cache, progress=False), root, "peta-reid",
                         model_name=relative(M0277))
    test_images = Images(test.test_images(), names)
    report.print(f"\n## 2. PETA-ReID test ({len(test_images.records)} images of the 3 sets pooled, "
                 f"{len(test_images.identities)} identities), rule {RULE}, unreliable weight {UNRELIABLE_WEIGHT}, "
                 f"look-alikes m {LOOKALIKES}, a {LOOKALIKE_WEIGHT}\n")
    heads = {"bundled": (bundled, head_b), "0277": (m0277, head_0277)}
    figures["test"] = table_on_test(heads, test_images, test, cache, report, TEST_CASES)

    report.print("\nImage + description on PETA-ReID test (mean over the 3 sets):\n")
    rows, fig = [], {}
    for label, (emb, head) in heads.items():
        for mode, beta in [("image", 0.0), ("filter", 0.0), ("rerank", best_mode[1] if best_mode[0] == "rerank"
                                                             else BETAS[2])]:
            m = image_plus_description(test, emb, head, test.image_root, cache, mode, beta)
            rows.append([label, mode, beta if mode == "rerank" else "", f"{m[0]:.1f}", f"{m[1]:.1f}"])
            fig[f"{label}/{mode}"] = m
    report.table(["model", "mode", "beta", "mAP", "R1"], rows)
    figures["test_image_plus_description"] = fig

    if not args.skip_latency:
        report.print(f"\n## Latency: description search, 5 terms, top 10 with evidence, {args.rows:,}-row synthetic "
                     f"index (57 attributes), one thread\n")
        figures["latency"] = {"rows": args.rows, **latency(args.rows, report)}
        report.print(f"\n## Finding every row's look-alikes (m {LOOKALIKES}, 256-d identity-structured vectors, one "
                     f"thread)\n")
        figures["lookalike_cost"] = lookalike_cost(*args.lookalike_rows, report)
    report.save(figures)


if __name__ == "__main__":
    main()
