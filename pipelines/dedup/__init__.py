"""dedup: exact and MinHash LSH deduplication across the release (and earlier releases), as
map -> shuffle through storage -> reduce steps (see tasks.py)."""

import os

from pipelines import io
from pipelines.dedup.config import DedupConfig
from pipelines.dedup.index import IndexError_, check_index
from pipelines.dedup.tasks import NAME, DedupApplyTask, DedupGlobalTask, DedupMapTask
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
    """Globs in `against` become the finished earlier releases they match (those with a dedup index),
    never the release itself; a glob may match nothing (the first release of a series)."""
    if not any(map(io.is_glob, cfg.against)):
        return cfg
    own = _normalised(ctx.release.output)
    releases: list[str] = []
    for pattern in cfg.against:
        if not io.is_glob(pattern):
            releases.append(pattern)
            continue
        found = [p[: -len("/dedup/_index.json")] for p in io.expand_paths(pattern.rstrip("/") + "/dedup/_index.json")]
        releases += [r for r in found if _normalised(r) != own and r not in releases]
    return cfg.model_copy(update={"against": releases})


def _normalised(location: str) -> str:
    return location.rstrip("/") if "://" in location else os.path.abspath(location)


def check(cfg: DedupConfig, ctx: CheckContext) -> None:
    for i, earlier in enumerate(cfg.against):
        try:
            check_index(earlier, cfg)
        except IndexError_ as exc:
            raise ConfigError(f"against[{i}]: {exc}") from None


STAGE = Stage(name=NAME, config=DedupConfig, check=check, resolve=resolve, phases=phases)
