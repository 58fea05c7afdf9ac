"""The CLIMB part of the mixture plan: clusters for every document, weights per (super-)cluster, and
the files to inspect them: OUT/mixture/clusters.parquet, history.parquet, mixture.json, mixture.png."""

from collections import Counter
from io import BytesIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import io
from pipelines.mixture import climb, sampling
from pipelines.mixture.config import MixtureConfig
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


def _embeddings(output: str, inputs, features: pa.Table) -> np.ndarray:
    """The embedding of every row of `features` (sorted by part, id)."""
    by_id = {}
    for shard, _ in inputs:
        table = io.read_table(io.join(output, "mixture", "_embeddings", f"{shard.part}.parquet"))
        for i, blob in zip(table.column("id").to_pylist(), table.column("embedding").to_pylist()):
            by_id[(shard.part, i)] = blob
    rows = [by_id[key] for key in zip(features.column("part").to_pylist(), features.column("id").to_pylist())]
    if not rows:
        return np.zeros((0, 8), dtype=np.float32)
    return np.frombuffer(b"".join(rows), dtype="<f2").reshape(len(rows), -1).astype(np.float32)


def _texts(inputs, wanted: dict[str, set[str]]) -> dict[tuple[str, str], str]:
    """Texts of the wanted (part -> ids) documents, read from the stage before the mixture."""
    found = {}
    for shard, upstream in inputs:
        ids = wanted.get(shard.part)
        if not ids:
            continue
        if upstream is not None:
            table = pq.read_table(shard.path(upstream), columns=["id", "text"], filters=[("id", "in", sorted(ids))])
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


def searched_clusters(keys: list[str], excluded: list[str | None], tokens: np.ndarray,
                      shares: str) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(candidate mask, cluster keys the search weighs, their tokens for its prior). Only candidates
    (documents `where` keeps, in clusters not pruned) can be selected: the search weighs the clusters
    that have some, its proxies train on them, and its prior counts tokens as `shares` says (DataMan's
    rule, as the plan does)."""
    candidate = np.array([e is None for e in excluded], dtype=bool)
    counted = candidate if shares == "after_where" else np.ones(len(keys), dtype=bool)
    key_array = np.array(keys, dtype=object)
    kept = sorted(set(key_array[candidate].tolist()) - {"pruned"})
    return candidate, kept, np.array([tokens[(key_array == k) & counted].sum() for k in kept], dtype=float)


def plan_clusters(output: str, inputs: tuple[tuple[ShardTask, str | None], ...], features: pa.Table,
                  cfg: MixtureConfig) -> tuple[pa.Table, dict[str, float], dict]:
    """(features with `cluster` and pruned documents excluded, weights per cluster key, mixture report)."""
    c = cfg.climb
    vectors = _embeddings(output, inputs, features)
    quality = features.column("quality").to_numpy(zero_copy_only=False).astype(float) if c.prune else None
    clusters = climb.build_clusters(vectors, quality, c)
    keys = [clusters.key(int(a)) for a in clusters.assignment]
    excluded = [e if k != "pruned" else "pruned_cluster"
                for e, k in zip(features.column("excluded_by").to_pylist(), keys)]
    features = features.set_column(features.schema.get_field_index("excluded_by"), "excluded_by",
                                   pa.array(excluded, pa.string()))
    features = features.append_column("cluster", pa.array(keys, pa.string()))
    tokens = features.column("tokens").to_numpy(zero_copy_only=False)
    candidate, kept, pool_tokens = searched_clusters(keys, excluded, tokens, cfg.shares)

    # per cluster: documents in a seeded order (the proxies' training pools, the examples, the terms)
    ids, parts = features.column("id").to_pylist(), features.column("part").to_pylist()
    order = np.argsort(sampling.seeded_keys(ids, c.seed), kind="stable")
    members: dict[int, list[int]] = {}
    for i in order:
        members.setdefault(int(clusters.assignment[i]), []).append(int(i))
    chars_needed = c.search.proxy.train_chars if c.search else 0
    wanted: dict[str, set[str]] = {}
    for rows in members.values():
        for i in rows[:TERM_DOCS]:
            wanted.setdefault(parts[i], set()).add(ids[i])
    texts = _texts(inputs, wanted)
    pools = {}
    if c.search:  # enough text per kept cluster for a proxy sample made only of it
        more: dict[str, set[str]] = {}
        for cluster, rows in members.items():
            if clusters.key(cluster) == "pruned":
                continue
            chars = 0
            for i in rows:
                if chars >= chars_needed:
                    break
                if not candidate[i]:
                    continue
                more.setdefault(parts[i], set()).add(ids[i])
                chars += int(tokens[i]) * 4  # a token is ~4 characters: read a little more than needed
        texts.update(_texts(inputs, more))
        for k in kept:
            pools[k] = [texts[(parts[i], ids[i])] for cl, rows in sorted(members.items()) if clusters.key(cl) == k
                        for i in rows if candidate[i] and (parts[i], ids[i]) in texts]

    if cfg.weights is not None:
        weights, history, predicted = dict(cfg.weights), [], None
    elif c.search is None or len(kept) < 2:
        weights, history, predicted = dict(zip(kept, (pool_tokens / max(pool_tokens.sum(), 1)).tolist())), [], None
    else:
        proxy = _proxy(output, cfg, [pools[k] for k in kept], kept)
        found = climb.search(pool_tokens, proxy, c.search)
        weights, history, predicted = dict(zip(kept, found["weights"])), found["history"], found["predicted"]

    background = Counter(w for t in texts.values() for w in set(t.lower().split()))
    rows = []
    for cluster in sorted(members):
        member_rows = members[cluster]
        near = sorted(member_rows, key=lambda i: -float(vectors[i] @ clusters.centroids[cluster]))[:EXAMPLES]
        rows.append({"cluster": cluster, "stratum": clusters.key(cluster), "docs": len(member_rows),
                     "tokens": int(tokens[member_rows].sum()), "quality_mean": clusters.quality.get(cluster),
                     "pruned": clusters.key(cluster) == "pruned",
                     "centroid": clusters.centroids[cluster].astype(np.float32).tolist(),
                     "top_terms": _top_terms([texts.get((parts[i], ids[i]), "") for i in member_rows[:TERM_DOCS]],
                                             background, len(texts)),
                     "examples": [ids[i] for i in near]})
    io.write_table_atomic(io.join(output, "mixture", "clusters.parquet"), rows, CLUSTER_SCHEMA)
    io.write_table_atomic(io.join(output, "mixture", "history.parquet"), history, HISTORY_SCHEMA)
    report = {"clusters": {"k": c.clusters, "non_empty": len(members), "kept": len(kept),
                           "pruned": sum(r["pruned"] for r in rows), "notes": clusters.notes},
              "weights": {k: round(float(w), 6) for k, w in sorted(weights.items())},
              "objective": {"predicted": predicted,
                            "best_evaluated": min((h["objective"] for h in history if h["objective"] is not None),
                                                  default=None),
                            "failed_runs": sum(h["objective"] is None for h in history)},
              "history": history}
    _plot(output, rows, weights)
    return features, weights, report


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
