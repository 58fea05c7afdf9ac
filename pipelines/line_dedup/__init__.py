"""line_dedup: boilerplate lines (or paragraphs) found in more than `max_docs` documents of the release
(and of earlier releases) removed from every text, as map -> shuffle through storage -> reduce -> apply
(see tasks.py). A finished release keeps its unit counts (OUT/line_dedup/_counts, _index.json) so a
later release can add them (`against`)."""

from pipelines import io
from pipelines.earlier import check_index as check_earlier_index
from pipelines.earlier import expand_against, location
from pipelines.errors import ConfigError
from pipelines.line_dedup.config import LineDedupConfig
from pipelines.line_dedup.tasks import COLUMN, NAME, index_params, path
from pipelines.line_dedup.tasks import LineDedupApplyTask as Apply
from pipelines.line_dedup.tasks import LineDedupMapTask as Map
from pipelines.line_dedup.tasks import LineDedupReduceTask as Reduce
from pipelines.stage import CheckContext, Phase, PhaseContext, Stage, Upstream, bucket_name

INDEX = "_index.json"


def phases(ctx: PhaseContext) -> list[Phase]:
    cfg, output = ctx.config(NAME), ctx.release.output
    maps = [Map(s, cfg, ctx.upstream[s.part]) for s in ctx.shards]
    maps_fingerprint = io.sha256_json({"maps": [m.fingerprint() for m in maps]})
    earlier = [io.read_json(path(r, INDEX)).get("fingerprint") for r in cfg.against]
    counts_fingerprint = io.sha256_json({"maps": maps_fingerprint, "max_docs": cfg.max_docs, "against": earlier})
    stage_fingerprint = io.sha256_json({"counts": counts_fingerprint, "min_doc_chars": cfg.min_doc_chars})
    parts = tuple(s.part for s in ctx.shards)
    reduces = [Reduce(output, cfg, parts, counts_fingerprint, b) for b in range(cfg.buckets)]
    applies = [Apply(s, cfg, ctx.upstream[s.part], stage_fingerprint) for s in ctx.shards]
    ctx.upstream.update({s.part: Upstream(NAME, stage_fingerprint) for s in ctx.shards})

    def write_index() -> None:  # once every bucket's counts are in place
        io.write_json_atomic(path(output, INDEX), {"params": index_params(cfg), "fingerprint": maps_fingerprint})

    return [Phase(f"{NAME} map", (NAME,), maps),
            Phase(f"{NAME} reduce", (NAME,), reduces, after=write_index),
            Phase(NAME, (NAME,), applies)]


def resolve(cfg: LineDedupConfig, ctx: CheckContext) -> LineDedupConfig:
    """Globs in `against` become the finished earlier releases they match (see pipelines.earlier)."""
    if not any(map(io.is_glob, cfg.against)):
        return cfg
    return cfg.model_copy(update={"against": expand_against(cfg.against, ctx.release.output, f"{NAME}/{INDEX}")})


def check_index(release: str, cfg: LineDedupConfig) -> None:
    """The earlier release's unit counts exist, are readable and were counted the same way; raises ValueError."""
    files = [path(release, "_counts", f"{bucket_name(b)}.parquet") for b in range(cfg.buckets)]
    check_earlier_index(release, NAME, index_params(cfg), "line_dedup settings", files)


def check(cfg: LineDedupConfig, ctx: CheckContext) -> None:
    own = location(ctx.release.output)
    for i, earlier in enumerate(cfg.against):
        if location(earlier) == own:
            raise ConfigError(f"against[{i}]: {earlier} is this release itself")
        try:
            check_index(earlier, cfg)
        except ValueError as exc:
            raise ConfigError(f"against[{i}]: {exc}") from None


STAGE = Stage(name=NAME, config=LineDedupConfig, check=check, resolve=resolve, phases=phases, columns=(COLUMN,))
