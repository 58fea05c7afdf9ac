"""dedup: exact and MinHash LSH deduplication across the release (and earlier releases), as
map -> shuffle through storage -> reduce steps (see tasks.py)."""

from pipelines import io
from pipelines.dedup.config import DedupConfig
from pipelines.dedup.index import check_index
from pipelines.dedup.tasks import NAME, DedupApplyTask, DedupGlobalTask, DedupMapTask
from pipelines.earlier import expand_against
from pipelines.errors import ConfigError
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
    """Globs in `against` become the finished earlier releases they match (see pipelines.earlier)."""
    if not any(map(io.is_glob, cfg.against)):
        return cfg
    return cfg.model_copy(update={"against": expand_against(cfg.against, ctx.release.output, f"{NAME}/_index.json")})


def check(cfg: DedupConfig, ctx: CheckContext) -> None:
    for i, earlier in enumerate(cfg.against):
        try:
            check_index(earlier, cfg)
        except ValueError as exc:
            raise ConfigError(f"against[{i}]: {exc}") from None


STAGE = Stage(name=NAME, config=DedupConfig, check=check, resolve=resolve, phases=phases)
