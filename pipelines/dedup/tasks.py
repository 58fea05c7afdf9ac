"""The dedup phase as runner tasks: map per input shard, reduce per bucket, one cluster step, apply per shard.

map     OUT/dedup/_sig/part-N.parquet (id, exact key, length, words[, shingles]) and the band keys,
        hash-partitioned to OUT/dedup/_bands/bucket-B/part-N.parquet (the shuffle through storage)
reduce  per bucket: documents sharing a (band, key) -> candidate pairs, _edges/bucket-B: an exact-text
        group is a star to its first member; a MinHash group pairs each member with up to the group's
        first `max_pairs_per_member` members (earlier releases first, then smallest ids). One DuckDB
        query under `memory` (spilling beyond it), streamed to the file: Python holds one batch
cluster verification (exact shingle Jaccard >= verify_threshold; exact pairs need none), and
        `anchored`: documents visited in keep order, a kept one removes its near duplicates not yet
        removed that pass verification (in memory up to `max_union_find_edges` pairs, each checked
        only when it can remove a document; beyond, DuckDB ranks, verifies and sorts the pairs under
        `memory` and Python sweeps them in batches with a flag per document in a pair), or
        `components`: connected components (union-find in memory when the edges are few, else
        min-label propagation in DuckDB; the pairs and their documents are held in Python)
apply   per input shard: documents removed become rejects with reason=duplicate, detail=exact|minhash
        and duplicate_of=<kept id>
Documents of earlier releases named in `against` join the graph and are always the kept ones.
"""

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pipelines import io
from pipelines.dedup import minhash
from pipelines.dedup.config import DedupConfig
from pipelines.dedup.index import index_params
from pipelines.documents import STATS_SCHEMA, reject
from pipelines.phase import ShardOutputs, fingerprint_data
from pipelines.shard_task import ApplyTask, Documents, OfShard, ShardTask
from pipelines.spill import duckdb_spilling
from pipelines.stage import Upstream, bucket_name

NAME = "dedup"
EXACT_BAND = -1  # the exact-text key travels through the same shuffle as a band of its own
SIG_SCHEMA = pa.schema([("id", pa.string()), ("part", pa.string()), ("exact", pa.uint64()),
                        ("chars", pa.int64()), ("words", pa.int64()), ("shingles", pa.list_(pa.uint64()))])
BAND_SCHEMA = pa.schema([("band", pa.int16()), ("key", pa.uint64()), ("id", pa.string())])
EDGE_SCHEMA = pa.schema([("a", pa.string()), ("b", pa.string()), ("exact", pa.bool_())])
CLUSTER_SCHEMA = pa.schema([("id", pa.string()), ("part", pa.string()), ("duplicate_of", pa.string()),
                            ("reason", pa.string()), ("cluster_size", pa.int64())])


def _path(output: str, *parts: str) -> str:
    return io.join(output, NAME, *parts)


def _list_column(arrays: list[np.ndarray | None]) -> pa.Array:
    """list<uint64> column straight from numpy (no Python ints); null where None."""
    lengths = [0 if a is None else len(a) for a in arrays]
    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if offsets[-1] >= 2**31:  # past list<> offsets: a shard this large goes the slow way
        return pa.array([None if a is None else a.tolist() for a in arrays], pa.list_(pa.uint64()))
    values = np.concatenate([a for a in arrays if a is not None] or [np.zeros(0, np.uint64)]).astype(np.uint64)
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values),
                                    mask=pa.array([a is None for a in arrays], pa.bool_()))


@dataclass(frozen=True)
class DedupMapTask(OfShard):
    shard: ShardTask
    cfg: DedupConfig
    upstream: Upstream

    @property
    def marker(self) -> str:
        return _path(self.shard.output, f"_SUCCESS.map.{self.part}")

    def fingerprint(self) -> str:
        return io.sha256_json({"upstream": self.upstream.fingerprint, "dedup": fingerprint_data(self.cfg)})

    def run(self) -> dict:
        out, cfg, part = self.shard.output, self.cfg, self.part
        m = cfg.minhash
        seeds = minhash.seeds(m.num_perm, m.seed)
        sigs, kept_shingles, buckets = [], [], [[] for _ in range(cfg.buckets)]
        sink = io.ParquetSink(_path(out, "_sig", f"{part}.parquet"), SIG_SCHEMA)

        def flush():  # a row group at a time: the map holds one group's shingles, not the shard's
            table = pa.Table.from_pylist(sigs, schema=SIG_SCHEMA)
            sink.write_table(table.set_column(SIG_SCHEMA.get_field_index("shingles"), "shingles",
                                              _list_column(kept_shingles)))
            sigs.clear()
            kept_shingles.clear()

        docs = Documents(self.shard, self.upstream.stage, record=True)
        for doc in docs:
            text = doc.get("text") or ""
            norm = minhash.normalize(text, m.lowercase, m.normalize_digits, m.strip_punctuation)
            shingles = minhash.shingle_hashes(norm, m.ngram)
            exact = minhash.exact_key(norm)
            sigs.append({"id": doc["id"], "part": part, "exact": exact, "chars": len(text),
                         "words": norm.count(" ") + 1 if norm else 0, "shingles": None})
            kept_shingles.append(shingles if m.verify else None)
            if len(sigs) == io.GROUP_ROWS:
                flush()
            if not len(shingles):
                continue  # no words: rejected as empty_text by apply, never compared
            keys = [(EXACT_BAND, exact)] if cfg.exact else []
            if m.enabled:
                bands = minhash.band_keys(minhash.signature(shingles, seeds)[None, :], m.bands, m.rows)[0]
                keys += [(b, int(k)) for b, k in enumerate(bands)]
            for band, key in keys:
                buckets[(key + band * 1_000_003) % cfg.buckets].append({"band": band, "key": key, "id": doc["id"]})
        docs.close()
        flush()
        sink.commit()
        for b, rows in enumerate(buckets):
            rows.sort(key=lambda r: (r["band"], r["key"], r["id"]))
            io.write_table_atomic(_path(out, "_bands", bucket_name(b), f"{part}.parquet"), rows, BAND_SCHEMA)
        return {"dedup_map": {"docs": docs.count}}


@dataclass(frozen=True)
class DedupGlobalTask:
    """reduce (bucket >= 0) or cluster (bucket = None); depends on every map output."""

    output: str
    cfg: DedupConfig
    maps_fingerprint: str  # of all map tasks together
    bucket: int | None = None
    input_file: str = ""

    @property
    def part(self) -> str:
        return bucket_name(self.bucket) if self.bucket is not None else "clusters"

    @property
    def marker(self) -> str:
        step = f"reduce.{self.part}" if self.bucket is not None else "cluster"
        return _path(self.output, f"_SUCCESS.{step}")

    def fingerprint(self) -> str:
        return self.maps_fingerprint

    def run(self) -> dict:
        return run_reduce(self) if self.bucket is not None else run_cluster(self)


def _release_files(task, pattern: str) -> list[tuple[str, list[str]]]:
    """(node prefix, files) for this release ('') and each earlier one ('@k:')."""
    found = [("", io.glob(_path(task.output), pattern))]
    found += [(f"@{k}:", io.glob(_path(r), pattern)) for k, r in enumerate(task.cfg.against)]
    return [(prefix, files) for prefix, files in found if files]


def edges_query(task: DedupGlobalTask) -> str | None:
    """The bucket's candidate pairs (a, b, exact), a < b, sorted, as one DuckDB query (None: no band files).
    Only (band, key) groups of two or more members are ranked by (origin, node); member i of this release
    pairs with member 0 in an exact-text group, else with members j < min(i, max_pairs_per_member), each
    pair once, exact if any exact-text group gave it. The pairs wanted are listed as (member, rank j) and
    joined on the rank, so a group of n costs n x max_pairs_per_member rows, not n^2."""
    selects = [f"SELECT band, key, {0 if prefix else 1} AS origin, '{prefix}' || id AS node "
               f"FROM read_parquet({io.sql_list(files)})"
               for prefix, files in _release_files(task, f"_bands/{task.part}/*.parquet")]
    if not selects:
        return None
    k = task.cfg.minhash.max_pairs_per_member
    return f"""
        WITH keys AS ({' UNION ALL '.join(selects)}),
        shared AS (SELECT band, key FROM keys GROUP BY band, key HAVING count(*) > 1),
        ranked AS (SELECT band, key, origin, node,
                          row_number() OVER (PARTITION BY band, key ORDER BY origin, node) - 1 AS i
                   FROM keys SEMI JOIN shared USING (band, key)),
        wanted AS (SELECT band, key, node,
                          unnest(range(CASE WHEN band = {EXACT_BAND} THEN 1 ELSE least(i, {k}) END)) AS j
                   FROM ranked WHERE origin = 1 AND i >= 1)  -- earlier releases rank first: already shipped
        SELECT least(w.node, r.node) AS a, greatest(w.node, r.node) AS b, bool_or(w.band = {EXACT_BAND}) AS exact
        FROM wanted w JOIN ranked r ON r.band = w.band AND r.key = w.key AND r.i = w.j
        WHERE w.node <> r.node GROUP BY ALL ORDER BY a, b"""


def run_reduce(task: DedupGlobalTask) -> dict:
    with duckdb_spilling(task.cfg.memory, task.output, *task.cfg.against) as con:
        query = edges_query(task)
        edges = io.write_batches(_path(task.output, "_edges", f"{task.part}.parquet"),
                                 con.sql(query).to_arrow_reader(io.GROUP_ROWS) if query else [], EDGE_SCHEMA)
    return {"dedup_reduce": {"edges": edges}}


def _union_find(edges: list[tuple[str, str]]) -> dict[str, str]:
    """node -> smallest node of its component."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(x, x) != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {node: find(node) for node in set(parent) | {n for e in edges for n in e}}


def _label_propagation(con, edge_files: list[str]) -> dict[str, str]:
    """Min-label propagation in DuckDB (spills to disk): every round a node takes the smallest label
    among itself and its neighbours, until no label changes."""
    con.execute(f"CREATE TABLE e AS SELECT a, b FROM read_parquet({io.sql_list(edge_files)}) "
                f"UNION SELECT b, a FROM read_parquet({io.sql_list(edge_files)})")
    con.execute("CREATE TABLE label AS SELECT DISTINCT a AS node, a AS label FROM e")
    while True:
        con.execute("CREATE TABLE next AS SELECT l.node, least(l.label, min(n.label)) AS label "
                    "FROM label l JOIN e ON e.a = l.node JOIN label n ON n.node = e.b GROUP BY l.node, l.label")
        changed = con.execute("SELECT count(*) FROM next JOIN label USING (node) "
                              "WHERE next.label <> label.label").fetchone()[0]
        con.execute("DROP TABLE label; ALTER TABLE next RENAME TO label")
        if not changed:
            return dict(con.execute("SELECT node, label FROM label").fetchall())


def _shingles(con, task, nodes) -> dict[str, np.ndarray]:
    """node -> its sorted shingle hashes (numpy views, no Python ints), for the nodes given that have them
    (an earlier release built without verification has none)."""
    con.register("needed", pa.table({"node": pa.array(sorted(nodes), pa.string())}))
    shingles = {}
    for prefix, files in _release_files(task, "_sig/*.parquet"):
        found = con.sql(f"SELECT node, shingles FROM (SELECT '{prefix}' || id AS node, shingles FROM "
                        f"read_parquet({io.sql_list(files)}) WHERE shingles IS NOT NULL) JOIN needed USING (node)")
        for batch in found.to_arrow_reader(10_000):  # chunk by chunk: no second copy of all the lists
            lists = batch.column(1)
            offsets, values = lists.offsets.to_numpy(), lists.values.to_numpy()
            for i, node in enumerate(batch.column(0).to_pylist()):
                shingles[node] = values[offsets[i] : offsets[i + 1]]
    con.unregister("needed")
    return shingles


def _similar(task, shingles: dict[str, np.ndarray]):
    """The verification test of a near-duplicate pair: exact shingle Jaccard >= verify_threshold (a pair
    with a document that has no shingles, of an earlier release built without verification, passes)."""
    threshold = task.cfg.minhash.verify_threshold
    return lambda a, b: a not in shingles or b not in shingles or minhash.jaccard(shingles[a], shingles[b]) >= threshold


def _verified(con, edges: list[tuple[str, str, bool]], task) -> list[tuple[str, str, bool]]:
    """Exact pairs, and the near-duplicate pairs that pass verification."""
    similar = _similar(task, _shingles(con, task, {n for a, b, exact in edges if not exact for n in (a, b)}))
    return [(a, b, exact) for a, b, exact in edges if exact or similar(a, b)]


def _metadata(con, task, nodes: set[str]) -> dict[str, tuple]:
    """node -> (origin: 0 earlier release, 1 this one; chars; exact key; part), for the nodes given (DuckDB
    joins them to the signatures: the release's other documents never reach Python)."""
    con.register("wanted", pa.table({"node": pa.array(sorted(nodes), pa.string())}))
    meta = {}
    for prefix, files in _release_files(task, "_sig/*.parquet"):
        origin = 0 if prefix else 1
        # in file and row order, so that an id found in two parts always ends on the later one
        for node, chars, exact, part in con.execute(
                f"SELECT node, chars, exact, part FROM (SELECT '{prefix}' || id AS node, chars, exact, part, "
                f"filename, file_row_number FROM read_parquet({io.sql_list(files)}, filename = true, "
                f"file_row_number = true)) JOIN wanted USING (node) ORDER BY filename, file_row_number").fetchall():
            meta[node] = (origin, chars, exact, part)
    con.unregister("wanted")
    return meta


def _components(con, edges: list[tuple[str, str, bool]], task, keep_order) -> dict[str, list[str]]:
    """keeper -> members of its connected component (keeper included)."""
    if len(edges) <= task.cfg.max_union_find_edges:
        label = _union_find([(a, b) for a, b, _ in edges])
    else:
        verified = _path(task.output, "_edges_verified.parquet")
        io.write_table_atomic(verified, [{"a": a, "b": b, "exact": e} for a, b, e in edges], EDGE_SCHEMA)
        label = _label_propagation(con, io.glob(_path(task.output), "_edges_verified.parquet"))
    components: dict[str, list[str]] = {}
    for node, root in label.items():
        components.setdefault(root, []).append(node)
    return {min(members, key=keep_order): members for members in components.values()}


def _anchored(con, edges: list[tuple[str, str, bool]], task, keep_order, meta) -> tuple[dict[str, list[str]], int]:
    """(keeper -> [keeper] + the documents it removes, pairs checked). Documents of identical normalised
    text (exact pairs) share their shingles, so each such class stands as its first member in keep order;
    near-duplicate pairs between those are oriented (earlier, later) in keep order and swept sorted: a
    document not removed when its turn comes is kept and removes its verified neighbours not yet removed.
    In memory (up to `max_union_find_edges` pairs); `_anchored_out_of_core` does the same in DuckDB."""
    ranked = sorted({n for e in edges for n in e[:2]}, key=keep_order)
    rank = {node: i for i, node in enumerate(ranked)}
    first_of_class: dict[int, str] = {}  # exact key -> first node in keep order
    rep = {}
    for node in ranked:
        rep[node] = first_of_class.setdefault(meta[node][2], node) if task.cfg.exact else node
    near = sorted({(min(rep[a], rep[b]), max(rep[a], rep[b])) for a, b, exact in edges
                   if not exact and rep[a] != rep[b]})
    # verified lazily, in the sweep: only a pair whose earlier document is kept and whose later one is
    # not yet removed can remove anything (a family of n copies costs n - 1 checks, not n(n-1)/2)
    similar = _similar(task, _shingles(con, task, {n for e in near for n in e})) if task.cfg.minhash.verify else None
    oriented = [(rank[a], rank[b]) if rank[a] < rank[b] else (rank[b], rank[a]) for a, b in near]
    stream = sorted(oriented)
    removed: dict[int, int] = {}  # rank -> rank of the kept document that removed it
    checked = 0
    for u, v in stream:
        if u not in removed and v not in removed and meta[ranked[v]][0] == 1:
            checked += similar is not None
            if similar is None or similar(ranked[u], ranked[v]):
                removed[v] = u
    groups: dict[str, list[str]] = {}
    for node in ranked:
        first = rep[node]
        keeper = ranked[removed[rank[first]]] if rank[first] in removed else first
        if keeper != node:
            groups.setdefault(keeper, [keeper]).append(node)
    return groups, checked


def _signatures(task) -> str:
    """A query of every signature row of this release and the earlier ones: node ('@k:' prefixed for
    earlier release k), origin (0 earlier, 1 this one), chars, exact, part, shingles, and its place
    (release, file, row) so that an id found in two parts ends on the later one."""
    return " UNION ALL ".join(
        f"SELECT '{prefix}' || id AS node, {0 if prefix else 1} AS origin, chars, exact, part, shingles, "
        f"{k} AS release, filename, file_row_number FROM read_parquet({io.sql_list(files)}, filename = true, "
        f"file_row_number = true)" for k, (prefix, files) in enumerate(_release_files(task, "_sig/*.parquet")))


def _anchored_out_of_core(con, task) -> tuple[list[int], int, int]:
    """(sizes of the clusters, pairs checked, documents removed); the removed documents are written to
    _clusters/clusters.parquet sorted by part and id. Documents of identical normalised text (exact pairs)
    share their shingles, so each such class stands as its first member in keep order; near-duplicate
    pairs between those are oriented (earlier, later) in keep order and streamed sorted: a document not
    removed when its turn comes is kept and removes its verified neighbours not yet removed. Everything
    but the sweep runs in DuckDB; the sweep holds a flag per document in a pair and one batch."""
    cfg = task.cfg
    keep = "origin, -chars, node" if cfg.keep == "longest" else "origin, node"
    con.execute(f"""CREATE TABLE ranked AS
        WITH nodes AS (SELECT a AS node FROM candidates UNION SELECT b FROM candidates),
        found AS (SELECT s.* FROM ({_signatures(task)}) s SEMI JOIN nodes USING (node)
                  QUALIFY row_number() OVER (PARTITION BY node ORDER BY release DESC, filename DESC,
                                                                       file_row_number DESC) = 1)
        SELECT *, row_number() OVER (ORDER BY {keep}) - 1 AS rank FROM found""")
    rep = "min(rank) OVER (PARTITION BY exact)" if cfg.exact else "rank"
    con.execute(f"CREATE TABLE reps AS SELECT rank, {rep} AS rep FROM ranked")
    verify = cfg.minhash.verify
    similar = "true"
    if verify:  # exact shingle Jaccard >= verify_threshold; a document without shingles (an earlier release built
        # without verification) passes; two empty sets are equal
        similar = (f"su.shingles IS NULL OR sv.shingles IS NULL OR (CASE WHEN len(su.shingles) = 0 OR "
                   f"len(sv.shingles) = 0 THEN (len(su.shingles) = len(sv.shingles))::DOUBLE ELSE "
                   f"len(list_intersect(su.shingles, sv.shingles)) / (len(su.shingles) + len(sv.shingles) - "
                   f"len(list_intersect(su.shingles, sv.shingles))) END) >= {cfg.minhash.verify_threshold!r}")
    count = con.execute("SELECT count(*) FROM ranked").fetchone()[0]
    con.execute("CREATE TABLE removed_by (v BIGINT, u BIGINT)")
    pairs = con.sql(f"""
        WITH near AS (SELECT DISTINCT least(pa.rep, pb.rep) AS u, greatest(pa.rep, pb.rep) AS v FROM candidates e
                      JOIN ranked ra ON ra.node = e.a JOIN reps pa ON pa.rank = ra.rank
                      JOIN ranked rb ON rb.node = e.b JOIN reps pb ON pb.rank = rb.rank
                      WHERE NOT e.exact AND pa.rep <> pb.rep)
        SELECT near.u, near.v, sv.origin = 1, {similar} FROM near JOIN ranked su ON su.rank = near.u
        JOIN ranked sv ON sv.rank = near.v ORDER BY near.u, near.v""").to_arrow_reader(100_000)
    removed = np.zeros(count, dtype=bool)
    writer, checked = con.cursor(), 0  # inserts beside the open stream
    for batch in pairs:
        us, vs, ours, same = (batch.column(i).to_numpy(zero_copy_only=False) for i in range(4))
        gone_v, gone_u = [], []
        for u, v, mine, ok in zip(us.tolist(), vs.tolist(), ours.tolist(), same.tolist()):
            if not removed[u] and not removed[v] and mine:  # only this release's documents are removed
                checked += verify
                if ok:
                    removed[v] = True
                    gone_v.append(v)
                    gone_u.append(u)
        if gone_v:
            writer.register("gone", pa.table({"v": pa.array(gone_v, pa.int64()), "u": pa.array(gone_u, pa.int64())}))
            writer.execute("INSERT INTO removed_by SELECT v, u FROM gone")
            writer.unregister("gone")
    con.execute("""CREATE TABLE member AS SELECT r.rank, coalesce(g.u, r.rep) AS keeper FROM reps r
                   LEFT JOIN removed_by g ON g.v = r.rep WHERE coalesce(g.u, r.rep) <> r.rank""")
    sizes = [int(n) + 1 for (n,) in con.execute("SELECT count(*) FROM member GROUP BY keeper ORDER BY keeper"
                                                ).fetchall()]
    rows = con.sql("""
        SELECT n.node AS id, n.part, CASE WHEN k.node[1] = '@' THEN k.node[strpos(k.node, ':') + 1:] ELSE k.node END
               AS duplicate_of, CASE WHEN n.exact = k.exact THEN 'exact' ELSE 'minhash' END AS reason,
               count(*) OVER (PARTITION BY m.keeper) + 1 AS cluster_size
        FROM member m JOIN ranked n ON n.rank = m.rank JOIN ranked k ON k.rank = m.keeper
        QUALIFY n.origin = 1 ORDER BY n.part, n.node""").to_arrow_reader(100_000)
    return sizes, checked, io.write_batches(_path(task.output, "_clusters", "clusters.parquet"), rows, CLUSTER_SCHEMA)


def run_cluster(task: DedupGlobalTask) -> dict:
    with duckdb_spilling(task.cfg.memory, task.output, *task.cfg.against) as con:
        return _cluster(con, task)


def _cluster(con, task: DedupGlobalTask) -> dict:
    # this configuration's buckets only: a release rerun with fewer buckets keeps the old files
    edge_files = [_path(task.output, "_edges", f"{bucket_name(b)}.parquet") for b in range(task.cfg.buckets)]
    con.execute(f"CREATE TABLE candidates AS SELECT a, b, bool_or(exact) AS exact FROM read_parquet("
                f"{io.sql_list(edge_files)}) GROUP BY a, b")  # read once, by both paths
    n_candidates = con.execute("SELECT count(*) FROM candidates").fetchone()[0]
    # the pairs' documents and shingles fit in memory up to max_union_find_edges pairs: Python is faster there
    # (numpy Jaccard, checked only when a pair can remove a document); beyond it, DuckDB under `memory`
    out_of_core = task.cfg.cluster == "anchored" and n_candidates > task.cfg.max_union_find_edges
    sizes, checked, duplicates = (_anchored_out_of_core if out_of_core else _in_memory)(con, task)
    metrics = {"candidate_pairs": n_candidates, "pairs_checked": checked, "clusters": len(sizes),
               "largest_cluster": max(sizes, default=0), "duplicates": duplicates}
    sizes_metrics = {f"cluster_size.{size}": sizes.count(size) for size in sorted(set(sizes))}
    rows = [{"stage": "dedup_clusters", "part": "clusters", "source": None, "input_file": None, "metric": k,
             "value": float(v)} for k, v in (metrics | sizes_metrics).items()]
    io.write_table_atomic(_path(task.output, "_stats", "clusters.parquet"), rows, STATS_SCHEMA)
    io.write_json_atomic(_path(task.output, "_index.json"), {"params": index_params(task.cfg)})
    return {"dedup_cluster": metrics}


def _in_memory(con, task: DedupGlobalTask) -> tuple[list[int], int, int]:
    """(sizes of the clusters, pairs checked, documents removed) with the pairs and their documents in
    memory: `anchored` up to `max_union_find_edges` pairs, `components` (beyond it, label propagation in
    DuckDB finds the components)."""
    cfg = task.cfg
    edges = con.execute("SELECT a, b, exact FROM candidates ORDER BY a, b").fetchall()
    meta = _metadata(con, task, {n for e in edges for n in e[:2]})

    def keep_order(node: str):
        origin, chars, _, _ = meta[node]
        return (origin, -chars, node) if cfg.keep == "longest" else (origin, node)

    if cfg.cluster == "anchored":
        groups, checked = _anchored(con, edges, task, keep_order, meta)
    else:
        checked = 0
        if cfg.minhash.verify:
            checked = sum(not exact for _, _, exact in edges)
            edges = _verified(con, edges, task)
        groups = _components(con, edges, task, keep_order)
    rows, sizes = [], []
    for keeper, members in groups.items():
        sizes.append(len(members))
        for node in members:
            if node != keeper and meta[node][0] == 1:  # only this release's documents are removed
                reason = "exact" if meta[node][2] == meta[keeper][2] else "minhash"
                rows.append({"id": node, "part": meta[node][3], "duplicate_of": keeper.split(":", 1)[-1]
                             if keeper.startswith("@") else keeper, "reason": reason, "cluster_size": len(members)})
    rows.sort(key=lambda r: (r["part"], r["id"]))
    io.write_table_atomic(_path(task.output, "_clusters", "clusters.parquet"), rows, CLUSTER_SCHEMA)
    return sizes, checked, len(rows)


@dataclass(frozen=True)
class DedupApplyTask(ApplyTask):
    stage = NAME

    def run(self) -> dict:
        out, part = self.shard.output, self.part
        removed = {r["id"]: r for r in io.read_table(_path(out, "_clusters", "clusters.parquet"),
                                             filters=[("part", "=", part)]).to_pylist()}
        empty = {r["id"] for r in io.read_table(_path(out, "_sig", f"{part}.parquet"), columns=["id", "words"])
                 .to_pylist() if r["words"] == 0}
        docs = Documents(self.shard, self.upstream.stage)  # a source read twice: its errors were kept by map
        outputs = ShardOutputs(self.shard, NAME, docs.schema())
        for doc in docs:
            if doc["id"] in empty:
                outputs.write(rejects=[reject(doc, NAME, "empty_text")])
            elif doc["id"] in removed:
                r = removed[doc["id"]]
                row = reject(doc, NAME, "duplicate", r["reason"]) | {"duplicate_of": r["duplicate_of"]}
                outputs.write(rejects=[row])
            else:
                outputs.write(docs=[doc])
        return {NAME: outputs.commit(docs_in=docs.count)}
