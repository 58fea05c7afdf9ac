"""Dedup quality on two sets: recall and precision against exact Jaccard, and the targets they must meet.

Sets: `crawl`, the extracted text of the crawl sample (WARC -> extract -> dedup), and `stress`, about
7,000 templated API-reference pages rendered with pydoc (dedup_stress.py; JSONL -> dedup). Ground
truth: every pair of documents whose exact Jaccard on the same shingles (normalised word 5-grams, as
the dedup stage uses) is >= 0.8, by an exact all-pairs join (prefix filtering). Recall: share of those
pairs of which at least one document is removed (never both shipped). Precision: share of removed
documents with a true near-duplicate (Jaccard >= 0.7) in their cluster; keeper precision: share of
removed documents with Jaccard >= 0.7 to their `duplicate_of`. Runs the stage (2 workers) at its
defaults and as it was before (no verification, connected components), prints the S-curve, and
checks TARGETS for the defaults on every set: exits 1 if one is missed.
"""

import argparse
import json
import math
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import dedup_stress
import numpy as np
from extract_filter import ROOT, WORK

sys.path.insert(0, str(ROOT))
from pipelines import stats  # noqa: E402
from pipelines.dedup import minhash  # noqa: E402

CONFIG = """release: dedup-quality
output: {out}
runner: {{kind: local, workers: 2}}
sources: [{source}]
stages:
{stages}  dedup: {dedup}
"""
SOURCES = {  # set -> (source, stages before dedup)
    "crawl": ('{{name: crawl, paths: ["{path}"], format: warc}}', "  extract: {}\n"),
    "stress": ('{{name: stress, paths: ["{path}/*.jsonl"], format: jsonl}}', ""),
}
SETTINGS = {"defaults": "{}", "unverified components": "{minhash: {verify: false}, cluster: components}"}
TRUE, NEAR = 0.8, 0.7  # a true pair (recall); a removed document's justification (precision)
TARGETS = {"precision": 0.99, "keeper precision": 0.98, "recall": 0.95}  # for the defaults, on every set


def jaccard(a: set, b: set) -> float:
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter) if a or b else 1.0


def true_pairs(shingles: dict[str, set], t: float) -> set[tuple[str, str]]:
    """Every pair (a < b) with Jaccard >= t, exactly: the all-pairs join with prefix filtering.

    Tokens are ordered rarest first (document frequency, then value). A pair with Jaccard >= t shares at
    least ceil(t * |x|) tokens of each set x, so their prefixes (each set's first |x| - ceil(t * |x|) + 1
    tokens) share a token. Sets are visited by size; each is a candidate with the earlier ones (|x| <=
    |y|, and t * |y| <= |x|) that share a prefix token, and every candidate is verified. Empty sets pair
    with nothing."""
    ids = sorted((i for i in shingles if shingles[i]), key=lambda i: (len(shingles[i]), i))
    sizes = [len(shingles[i]) for i in ids]
    tokens = np.fromiter((tok for i in ids for tok in shingles[i]), dtype=np.uint64, count=sum(sizes))
    distinct, inverse, df = np.unique(tokens, return_inverse=True, return_counts=True)
    rank = np.empty(len(distinct), dtype=np.int64)
    rank[np.lexsort((distinct, df))] = np.arange(len(distinct))  # 0 = the rarest token
    ranks = np.split(rank[inverse], np.cumsum(sizes)[:-1])  # each set's tokens as ranks
    index = defaultdict(list)  # token rank -> the sets visited so far with it in their prefix
    pairs = set()
    for y, n, r in zip(ids, sizes, ranks):
        prefix = np.sort(r)[: n - math.ceil(t * n - 1e-9) + 1].tolist()
        candidates = {x for tok in prefix for x in index[tok] if len(shingles[x]) >= t * n - 1e-9}
        pairs.update((min(x, y), max(x, y)) for x in candidates if jaccard(shingles[x], shingles[y]) >= t)
        for tok in prefix:
            index[tok].append(y)
    return pairs


def run(set_name: str, path: str, setting: str) -> tuple[dict, object, float]:
    """Runs the stage; returns cluster (id -> its kept id), the release's DuckDB connection, seconds."""
    out = WORK / f"dedup-quality-{set_name}-{setting.replace(' ', '-')}"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    config = WORK / f"{out.name}.yaml"
    source, stages = SOURCES[set_name]
    config.write_text(CONFIG.format(out=out, source=source.format(path=path), stages=stages, dedup=SETTINGS[setting]))
    start = time.perf_counter()
    subprocess.run(
        [str(ROOT / ".venv/bin/gristmill"), "run", str(config), "--quiet"], check=True, capture_output=True, cwd=ROOT
    )
    seconds = time.perf_counter() - start
    con = stats.connect(str(out))
    cluster = {i: i for (i,) in con.execute("SELECT id FROM docs_dedup").fetchall()}
    cluster.update(dict(con.execute("SELECT id, duplicate_of FROM rejects WHERE reason='duplicate'").fetchall()))
    return cluster, con, seconds


def texts_of(set_name: str, path: str, con) -> dict[str, str]:
    """The stage's input: the extracted text (crawl) or the JSONL pages (stress)."""
    if set_name == "crawl":
        return dict(con.execute("SELECT id, text FROM docs_extract").fetchall())
    lines = [line for f in sorted(Path(path).glob("*.jsonl")) for line in f.read_text(encoding="utf-8").splitlines()]
    pages = map(json.loads, lines)
    return {p["id"]: p["text"] for p in pages}


def scores(cluster: dict, truth: set, shingles: dict) -> dict[str, float]:
    members = defaultdict(list)
    for doc, kept in cluster.items():
        members[kept].append(doc)
    removed = [d for d, kept in cluster.items() if kept != d]
    n = max(len(removed), 1)
    near = [any(jaccard(shingles[d], shingles[o]) >= NEAR for o in members[cluster[d]] if o != d) for d in removed]
    return {
        "removed": len(removed),
        "recall": sum(cluster[a] != a or cluster[b] != b for a, b in truth) / max(len(truth), 1),
        "precision": sum(near) / n,
        "keeper precision": sum(jaccard(shingles[d], shingles[cluster[d]]) >= NEAR for d in removed) / n,
    }


def measure(set_name: str, path: str) -> dict[str, float]:
    """Runs every setting on one set and prints its table; returns the defaults' scores."""
    runs = {setting: run(set_name, path, setting) for setting in SETTINGS}
    texts = texts_of(set_name, path, runs["defaults"][1])
    start = time.perf_counter()
    shingles = {i: set(minhash.shingle_hashes(minhash.normalize(t), 5).tolist()) for i, t in texts.items()}
    middle = time.perf_counter()
    truth = true_pairs(shingles, TRUE)
    print(
        f"\n{set_name}: {len(texts)} documents, {len(truth)} true pairs with Jaccard >= {TRUE} (shingles "
        f"{middle - start:.1f} s, exact join {time.perf_counter() - middle:.1f} s)"
    )
    print(f"{'setting':<22} {'run s':>6} {'removed':>8} {'recall':>7} {'precision':>9} {'keeper precision':>16}")
    results = {}
    for setting, (cluster, _, seconds) in runs.items():
        r = results[setting] = scores(cluster, truth, shingles)
        print(
            f"{setting:<22} {seconds:>6.1f} {r['removed']:>8} {r['recall']:>7.4f} {r['precision']:>9.4f} "
            f"{r['keeper precision']:>16.4f}"
        )
    return results["defaults"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default=str(ROOT.parent / "shared/data/crawl-sample/*.warc.gz"))
    parser.add_argument("--sets", nargs="+", choices=list(SOURCES), default=list(SOURCES))
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    sim = np.arange(0.5, 1.01, 0.1)
    print(
        "S-curve, 14 bands x 8 rows: P(candidate) at Jaccard",
        ", ".join(f"{s:.2f}: {p:.3f}" for s, p in zip(sim, minhash.s_curve(sim, 14, 8))),
    )
    paths = {"crawl": args.input}
    if "stress" in args.sets:
        start = time.perf_counter()
        paths["stress"] = str(dedup_stress.build())
        print(f"stress set: {paths['stress']} ({time.perf_counter() - start:.1f} s to build or find)")
    defaults = {name: measure(name, paths[name]) for name in args.sets}
    print("\ntargets for the defaults:")
    failed = 0
    for name, r in defaults.items():
        for metric, target in TARGETS.items():
            ok = r[metric] >= target
            failed += not ok
            print(f"{name:<7} {metric:<17} {r[metric]:.4f} >= {target}  {'PASS' if ok else 'FAIL'}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
