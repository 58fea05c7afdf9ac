"""The CLIMB part of the mixture plan: clusters for every document, weights per (super-)cluster, and
the files to inspect them: OUT/mixture/clusters.parquet, history.parquet, mixture.json, mixture.png."""

from collections import Counter
from io import BytesIO

import numpy as np
import pyarrow as pa

from pipelines import io
from pipelines.mixture import climb
from pipelines.mixture.clusters import read_centroids
from pipelines.mixture.config import MixtureConfig
from pipelines.mixture.plan import rows_of
from pipelines.mixture.proxy import CommandProxy, NgramProxy, command_workdir
from pipelines.sample import sample_texts
from pipelines.shard_task import Documents, ShardTask

CLUSTER_SCHEMA = pa.schema([("cluster", pa.int64()), ("stratum", pa.string()), ("docs", pa.int64()),
                            ("tokens", pa.int64()), ("quality_mean", pa.float64()), ("pruned", pa.bool_()),
                            ("centroid", pa.list_(pa.float32())), ("top_terms", pa.list_(pa.string())),
                            ("examples", pa.list_(pa.string()))])
HISTORY_SCHEMA = pa.schema([("iteration", pa.int64()), ("run", pa.int64()), ("weights", pa.list_(pa.float64())),
                            ("objective", pa.float64()), ("predicted", pa.float64()), ("status", pa.string())])
EXAMPLES = 3
TERM_DOCS = 50  # documents per cluster whose words give its top terms


def _texts(inputs, wanted: dict[str, set[str]]) -> dict[tuple[str, str], str]:
    """Texts of the wanted (part -> ids) documents, read from the stage before the mixture."""
    found = {}
    for shard, upstream in inputs:
        ids = wanted.get(shard.part)
        if not ids:
            continue
        if upstream is not None:
            table = io.read_table(shard.path(upstream), columns=["id", "text"], filters=[("id", "in", sorted(ids))])
            rows = zip(table.column("id").to_pylist(), table.column("text").to_pylist())
        else:
            rows = ((d["id"], d.get("text")) for d in Documents(shard, None) if d["id"] in ids)
        found.update({(shard.part, i): t or "" for i, t in rows})
    return found


def _top_terms(texts: list[str], background: Counter, total: int, n: int = 8) -> list[str]:
    counts = Counter(w for t in texts for w in set(t.lower().split()) if w.isalpha() and len(w) > 2)
    size = max(len(texts), 1)
    lift = {w: (c / size) / ((background[w] + 1) / (total + 1)) for w, c in counts.items() if c >= 2}
    return [w for w, _ in sorted(lift.items(), key=lambda x: (-x[1], x[0]))[:n]]


def searched_clusters(totals: dict[str, tuple[int, int, int]], shares: str) -> tuple[list[str], np.ndarray]:
    """(cluster keys the search weighs, their tokens for its prior), from key -> (candidates, candidate
    tokens, tokens). Only candidates (documents `where` keeps, in clusters not pruned) can be selected:
    the search weighs the clusters that have some, its proxies train on them, and its prior counts tokens
    as `shares` says (DataMan's rule, as the plan does)."""
    kept = sorted(k for k, (candidates, _, _) in totals.items() if candidates and k != "pruned")
    column = 1 if shares == "after_where" else 2
    return kept, np.array([totals[k][column] for k in kept], dtype=float)


def _first(con, clusters: list[int], n: int, where: str = "true") -> dict[int, list[tuple]]:
    """cluster -> its first n documents (part, id, candidate, tokens) in the seeded order (ties by part, id)."""
    if not clusters:
        return {}
    con.register("wanted_clusters", pa.table({"kmeans": pa.array(clusters, pa.int64())}))
    key = "{'k': climb_key, 'p': part, 'i': id}"
    found = con.execute(f"SELECT kmeans, min_by({{'p': part, 'i': id, 'c': excluded_by IS NULL, 't': tokens}}, {key}, "
                        f"{n}) FROM assigned WHERE kmeans IN (SELECT kmeans FROM wanted_clusters) AND {where} "
                        "GROUP BY kmeans").fetchall()
    con.unregister("wanted_clusters")
    return {c: [(r["p"], r["i"], r["c"], r["t"]) for r in rows] for c, rows in found}


def _pools(con, clusters: list[int], chars_needed: int, heads: dict[int, list[tuple]]) -> dict[int, list[tuple]]:
    """cluster -> the candidates its proxies train on, in the seeded order: as many as give `chars_needed`
    characters (a token is ~4 characters: a little more than needed), and at least those among its first
    TERM_DOCS documents (their texts are read anyway)."""
    pools, todo, n = {}, list(clusters), 256
    while todo:
        found = _first(con, todo, n, "excluded_by IS NULL")
        todo = []
        for cluster, rows in found.items():
            chars, take = 0, 0
            for _, _, _, t in rows:
                if chars >= chars_needed:
                    break
                take, chars = take + 1, chars + t * 4
            if take == len(rows) == n and chars < chars_needed:
                todo.append(cluster)  # more are needed: ask for 4 times as many
                continue
            take = max(take, sum(c for _, _, c, _ in heads.get(cluster, [])))
            pools[cluster] = rows[:take]
        n *= 4
    return pools


def plan_clusters(con, output: str, inputs: tuple[tuple[ShardTask, str | None], ...],
                  cfg: MixtureConfig) -> tuple[dict[str, float], dict]:
    """(weights per cluster key, mixture report), and the view `clustered` of the documents with their
    `cluster` key (pruned ones excluded as `pruned_cluster`) for the plan's selection."""
    c = cfg.climb
    files = [io.join(output, "mixture", "_assigned", f"{shard.part}.parquet") for shard, _ in inputs]
    con.execute(f"CREATE OR REPLACE VIEW assigned AS SELECT * EXCLUDE (cluster), cluster AS kmeans "
                f"FROM ({rows_of(files)})")
    centroids, notes = read_centroids(output)
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    con.execute("SET threads = 1")  # the mean quality summed in one order: the same bits on every run
    per = con.execute("SELECT kmeans, count(*), sum(tokens), avg(quality) FILTER (WHERE NOT isnan(quality)) FROM "
                      "assigned GROUP BY kmeans ORDER BY kmeans").fetchall()
    con.execute(f"SET threads = {threads}")
    sizes = {k: (int(d), int(t)) for k, d, t, _ in per}
    clusters = climb.build_clusters(centroids, {k: float("nan") if q is None else float(q) for k, *_, q in per},
                                    c, notes)
    present = sorted(sizes)
    con.register("cluster_keys", pa.table({"kmeans": pa.array(present, pa.int64()),
                                           "cluster": pa.array([clusters.key(k) for k in present], pa.string())}))
    con.execute("CREATE OR REPLACE VIEW clustered AS SELECT a.* REPLACE (CASE WHEN k.cluster = 'pruned' THEN "
                "'pruned_cluster' ELSE a.excluded_by END AS excluded_by), k.cluster FROM assigned a "
                "JOIN cluster_keys k USING (kmeans)")
    totals = {k: (int(n), int(ct or 0), int(t)) for k, n, ct, t in con.execute(
        "SELECT cluster, count(*) FILTER (excluded_by IS NULL), sum(tokens) FILTER (excluded_by IS NULL), "
        "sum(tokens) FROM clustered GROUP BY cluster").fetchall()}
    kept, pool_tokens = searched_clusters(totals, cfg.shares)

    # per cluster: documents in a seeded order (the proxies' training pools, the examples, the terms)
    heads = _first(con, present, TERM_DOCS)
    pools = _pools(con, [k for k in present if clusters.key(k) != "pruned"], c.search.proxy.train_chars,
                   heads) if c.search else {}
    wanted: dict[str, set[str]] = {}
    for rows in [*heads.values(), *pools.values()]:
        for part, i, *_ in rows:
            wanted.setdefault(part, set()).add(i)
    texts = _texts(inputs, wanted)
    if cfg.weights is not None:
        weights, history, predicted = dict(cfg.weights), [], None
    elif c.search is None or len(kept) < 2:
        weights, history, predicted = dict(zip(kept, (pool_tokens / max(pool_tokens.sum(), 1)).tolist())), [], None
    else:
        trained = {k: [texts[(p, i)] for cl in sorted(pools) if clusters.key(cl) == k for p, i, *_ in pools[cl]
                       if (p, i) in texts] for k in kept}
        proxy = _proxy(output, cfg, [trained[k] for k in kept], kept)
        found = climb.search(pool_tokens, proxy, c.search)
        weights, history, predicted = dict(zip(kept, found["weights"])), found["history"], found["predicted"]

    examples = dict(con.execute(f"SELECT kmeans, min_by(id, {{'s': -similarity, 'k': climb_key, 'p': part, 'i': id}}, "
                                f"{EXAMPLES}) FROM assigned GROUP BY kmeans").fetchall())
    background = Counter(w for t in texts.values() for w in set(t.lower().split()))
    rows = []
    for cluster in present:
        rows.append({"cluster": cluster, "stratum": clusters.key(cluster), "docs": sizes[cluster][0],
                     "tokens": sizes[cluster][1], "quality_mean": clusters.quality.get(cluster),
                     "pruned": clusters.key(cluster) == "pruned",
                     "centroid": clusters.centroids[cluster].astype(np.float32).tolist(),
                     "top_terms": _top_terms([texts.get((p, i), "") for p, i, *_ in heads[cluster]],
                                             background, len(texts)),
                     "examples": examples[cluster]})
    io.write_table_atomic(io.join(output, "mixture", "clusters.parquet"), rows, CLUSTER_SCHEMA)
    io.write_table_atomic(io.join(output, "mixture", "history.parquet"), history, HISTORY_SCHEMA)
    report = {"clusters": {"k": c.clusters, "non_empty": len(present), "kept": len(kept),
                           "pruned": sum(r["pruned"] for r in rows), "notes": clusters.notes},
              "weights": {k: round(float(w), 6) for k, w in sorted(weights.items())},
              "objective": {"predicted": predicted,
                            "best_evaluated": min((h["objective"] for h in history if h["objective"] is not None),
                                                  default=None),
                            "failed_runs": sum(h["objective"] is None for h in history)},
              "history": history}
    _plot(output, rows, weights)
    return weights, report


def _proxy(output: str, cfg: MixtureConfig, pools: list[list[str]], keys: list[str]):
    proxy = cfg.climb.search.proxy
    validation = [t for _, t in sample_texts(proxy.validation, 10_000)]
    if not validation:
        raise ValueError("stages.mixture.climb.search.proxy.validation: no text in the validation set")
    if proxy.kind == "ngram":
        return NgramProxy(proxy, pools, validation)
    return CommandProxy(proxy, pools, keys, command_workdir(io.join(output, "mixture", "_proxy"),
                                                            "gristmill-proxy-"))


def _plot(output: str, rows: list[dict], weights: dict[str, float]) -> None:
    """mixture.png: tokens per cluster and the final weight of its (super-)cluster."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.bar([str(r["cluster"]) for r in rows], [r["tokens"] for r in rows],
             color=["#bbb" if r["pruned"] else "#4477aa" for r in rows])
    left.set_title("tokens per k-means cluster (grey: pruned)")
    left.set_xlabel("cluster")
    keys = sorted(weights)
    right.bar(keys, [weights[k] for k in keys], color="#cc6677")
    right.set_title("final mixture weight per (super-)cluster")
    right.tick_params(axis="x", rotation=90)
    fig.tight_layout()
    buffer = BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})  # no version stamp: same bytes every run
    plt.close(fig)
    io.write_bytes_atomic(io.join(output, "mixture", "mixture.png"), buffer.getvalue())
