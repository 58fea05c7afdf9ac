"""dedup: exact and MinHash LSH deduplication across the release (and earlier releases), as
map -> shuffle through storage -> reduce steps (see tasks.py)."""

import contextlib

from pipelines import io
from pipelines.dedup.config import MIN_BUCKETS, DedupConfig
from pipelines.dedup.index import check_index
from pipelines.dedup.tasks import NAME, DedupApplyTask, DedupGlobalTask, DedupMapTask
from pipelines.earlier import expand_against
from pipelines.errors import ConfigError
from pipelines.report_parts import docs, esc, example, grouped_bars, input_view, table, views
from pipelines.stage import CheckContext, Phase, PhaseContext, Stage, Upstream


def phases(ctx: PhaseContext) -> list[Phase]:
    cfg, output = ctx.config(NAME), ctx.release.output
    maps = [DedupMapTask(s, cfg, ctx.upstream[s.part]) for s in ctx.shards]
    maps_fingerprint = io.sha256_json({"maps": [m.fingerprint() for m in maps], "against": cfg.against})
    applies = [DedupApplyTask(s, cfg, ctx.upstream[s.part], maps_fingerprint) for s in ctx.shards]
    ctx.upstream.update({s.part: Upstream(NAME, maps_fingerprint) for s in ctx.shards})
    reduces = [DedupGlobalTask(output, cfg, maps_fingerprint, b) for b in range(cfg.buckets)]
    return [Phase("dedup map", (NAME,), maps),
            Phase("dedup reduce", (NAME,), reduces),
            Phase("dedup cluster", (NAME,), [DedupGlobalTask(output, cfg, maps_fingerprint)]),
            Phase("dedup", (NAME,), applies)]


def resolve(cfg: DedupConfig, ctx: CheckContext) -> DedupConfig:
    """Globs in `against` become the finished earlier releases they match (see pipelines.earlier), and
    `buckets: auto` a number (the map hashes keys into buckets, so it is fixed before any work)."""
    if any(map(io.is_glob, cfg.against)):
        cfg = cfg.model_copy(update={"against": expand_against(cfg.against, ctx.release.output,
                                                               f"{NAME}/_index.json")})
    if cfg.buckets == "auto":
        cfg = cfg.model_copy(update={"buckets": auto_buckets(cfg, ctx)})
    return cfg


def auto_buckets(cfg: DedupConfig, ctx: CheckContext) -> int:
    """The earlier release's number with `against` (its keys must land in the same buckets), else one
    per input shard, at least MIN_BUCKETS, rounded up to a power of two."""
    for earlier in cfg.against:
        index = io.join(earlier, NAME, "_index.json")
        if io.exists(index):  # else check() reports the missing index
            with contextlib.suppress(ValueError, TypeError, KeyError, AttributeError):  # corrupt: check() says so
                return int(io.read_json(index)["params"]["buckets"])
    shards = sum(len({f for p in src.paths for f in io.expand_paths(p, src.storage_options)})
                 for src in ctx.release.sources)  # as release.plan counts them: one per input file
    return max(MIN_BUCKETS, 1 << (shards - 1).bit_length())


def check(cfg: DedupConfig, ctx: CheckContext) -> None:
    for i, earlier in enumerate(cfg.against):
        try:
            check_index(earlier, cfg)
        except ValueError as exc:
            raise ConfigError(f"against[{i}]: {exc}") from None


LARGEST = 10  # clusters shown with an example


def report(con, output: str) -> list[str]:
    """The cluster size distribution (the `dedup_clusters` statistics) and the LARGEST clusters, each with the
    document kept and one removed duplicate (from OUT/dedup/_clusters/clusters.parquet: one row per duplicate)."""
    got = con.execute("SELECT metric, sum(value) FROM stats WHERE stage = 'dedup_clusters' GROUP BY 1").fetchall()
    if not got:
        return []
    metrics = {m: int(v) for m, v in got}
    sizes = sorted((int(m.split(".", 1)[1]), n) for m, n in metrics.items() if m.startswith("cluster_size."))
    m = {k: metrics.get(k, 0)
         for k in ("clusters", "duplicates", "largest_cluster", "candidate_pairs", "pairs_checked")}
    parts = ["<h2>Dedup clusters</h2>",
             f"<p>{m['clusters']} clusters of duplicates, {m['duplicates']} documents removed, the largest of "
             f"{m['largest_cluster']} documents; {m['candidate_pairs']} candidate pairs, {m['pairs_checked']} "
             "checked.</p>"]
    if sizes:
        parts += [grouped_bars([s for s, _ in sizes], {"clusters": [n for _, n in sizes]}, "dedup cluster sizes",
                               xlabel="documents in the cluster", ylabel="clusters"),
                  table(["cluster size", "clusters"], sizes, "dedup_sizes")]
    files = io.glob(output, f"{NAME}/_clusters/*.parquet")
    if not files:
        return parts
    listing = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    largest = con.execute(
        f"SELECT duplicate_of, max(cluster_size) AS size, count(*), string_agg(DISTINCT reason, ', ' ORDER BY reason), "
        f"min(id) FROM read_parquet([{listing}]) GROUP BY 1 ORDER BY size DESC, md5(duplicate_of), duplicate_of "
        f"LIMIT {LARGEST}").fetchall()
    if not largest:
        return parts
    keepers = [k for k, *_ in largest]
    kept = docs(con, "docs_dedup" if "docs_dedup" in views(con) else None, keepers)
    missing = [k for k in keepers if k not in kept]
    kept |= docs(con, input_view(con, NAME), missing)  # kept here but gone later, or a keeper of an earlier release
    dups = [d for *_, d in largest]
    removed = {i: (u, t) for i, u, t in con.execute(
        f"SELECT id, any_value(url), any_value(text) FROM rejects WHERE stage = ? "
        f"AND id IN ({', '.join('?' for _ in dups)}) GROUP BY 1", [NAME, *dups]).fetchall()} \
        if "rejects" in views(con) else {}
    parts += [f"<h3>The {len(largest)} largest clusters</h3>",
              table(["kept document", "cluster size", "removed here", "match"],
                    [(k, size, n, reason) for k, size, n, reason, _ in largest], "dedup_largest")]
    for keeper, size, _, reason, dup in largest:
        url, text = removed.get(dup, (None, None))
        parts.append(f"<details class='dedup-cluster' data-id='{esc(keeper)}'><summary>{esc(keeper)}: {size} "
                     f"documents ({esc(reason)})</summary><ul>"
                     + example(keeper, *kept.get(keeper, (None, None)), "kept") + example(dup, url, text, "removed")
                     + "</ul></details>")
    return parts


STAGE = Stage(name=NAME, config=DedupConfig, check=check, resolve=resolve, phases=phases, report=report)
