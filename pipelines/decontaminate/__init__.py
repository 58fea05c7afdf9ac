"""decontaminate: documents sharing word n-grams with evaluation benchmarks rejected, or the matching
spans cut out, as index -> apply steps (see tasks.py). Every hit is recorded (DuckDB view `contamination`)."""

from pipelines import io
from pipelines.decontaminate.config import DecontaminateConfig
from pipelines.decontaminate.tasks import COLUMN, NAME, benchmark_fingerprint, read_items
from pipelines.decontaminate.tasks import DecontaminateApplyTask as Apply
from pipelines.decontaminate.tasks import DecontaminateIndexTask as IndexTask
from pipelines.errors import ConfigError
from pipelines.stage import CheckContext, Phase, PhaseContext, Stage, Upstream


def phases(ctx: PhaseContext) -> list[Phase]:
    cfg, output = ctx.config(NAME), ctx.release.output
    index = IndexTask(output, cfg, benchmark_fingerprint(cfg))
    applies = []
    for shard in ctx.shards:
        upstream = ctx.upstream[shard.part]
        fingerprint = io.sha256_json({"index": index.fingerprint(), "upstream": upstream.fingerprint})
        applies.append(Apply(shard, cfg, upstream, fingerprint))
        ctx.upstream[shard.part] = Upstream(NAME, fingerprint)
    return [Phase(f"{NAME} index", (NAME,), [index]), Phase(NAME, (NAME,), applies)]


def check(cfg: DecontaminateConfig, ctx: CheckContext) -> None:
    """Every benchmark is read before any work: a missing file or field, a corrupt record, or no text is
    a config error naming it."""
    for i, bench in enumerate(cfg.benchmarks):
        try:
            read_items(bench)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"benchmarks[{i}] ({bench.name}): {exc}") from None


def report(con, output: str) -> list[str]:
    from pipelines.report_parts import table

    if not io.glob(output, f"{NAME}/_contamination/*.parquet"):
        return []
    rows = con.execute("SELECT benchmark, count(DISTINCT id), sum(ngrams), sum(chars_removed), "
                       "count(*) FILTER (WHERE action = 'rejected') FROM contamination GROUP BY 1 ORDER BY 1"
                       ).fetchall()
    if not rows:
        return ["<h2>Decontamination</h2><p>No document shares an n-gram with the benchmarks.</p>"]
    items = con.execute("SELECT benchmark, item, count(*) AS docs FROM contamination GROUP BY 1, 2 "
                        "ORDER BY docs DESC, benchmark, item LIMIT 10").fetchall()
    return ["<h2>Decontamination</h2>",
            table(["benchmark", "documents hit", "n-grams matched", "characters removed", "rejected"], rows,
                  "contamination"),
            "<p>The items found in the most documents:</p>",
            table(["benchmark", "item", "documents"], items, "contamination-items")]


STAGE = Stage(name=NAME, config=DecontaminateConfig, check=check, phases=phases, columns=(COLUMN,), report=report,
              views=(("contamination", "_contamination/*.parquet"),))
