"""url_dedup: documents with the same normalised URL across the release, one kept by a rule, as
map -> shuffle through storage -> reduce -> apply steps (see tasks.py)."""

from pipelines import io
from pipelines.stage import Phase, PhaseContext, Stage, Upstream
from pipelines.url_dedup.config import UrlDedupConfig
from pipelines.url_dedup.tasks import NAME, UrlApplyTask, UrlMapTask, UrlReduceTask


def phases(ctx: PhaseContext) -> list[Phase]:
    cfg, output = ctx.config(NAME), ctx.release.output
    maps = [UrlMapTask(s, cfg, ctx.upstream[s.part]) for s in ctx.shards]
    maps_fingerprint = io.sha256_json({"maps": [m.fingerprint() for m in maps], "keep": cfg.keep})
    applies = [UrlApplyTask(s, cfg, ctx.upstream[s.part], maps_fingerprint) for s in ctx.shards]
    ctx.upstream.update({s.part: Upstream(NAME, maps_fingerprint) for s in ctx.shards})
    parts = tuple(s.part for s in ctx.shards)
    reduces = [UrlReduceTask(output, cfg, maps_fingerprint, parts, b) for b in range(cfg.buckets)]
    return [Phase(f"{NAME} map", (NAME,), maps),
            Phase(f"{NAME} reduce", (NAME,), reduces),
            Phase(NAME, (NAME,), applies)]


STAGE = Stage(name=NAME, config=UrlDedupConfig, phases=phases)
