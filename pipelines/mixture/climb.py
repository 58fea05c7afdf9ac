"""CLIMB (Diao et al. 2025) on one machine: cluster the embeddings, prune and merge clusters, then
search cluster weights by iterative bootstrapping with a LightGBM predictor over proxy runs.

Everything is seeded and single-threaded where order could matter (faiss, LightGBM), so the same
inputs give the same clusters, the same history and the same weights.
"""

from dataclasses import dataclass, field

import numpy as np

from pipelines.mixture.config import ClimbConfig, SearchConfig


@dataclass
class Clusters:
    centroids: np.ndarray  # (k, dim)
    super_of: dict[int, int]  # k-means cluster -> super-cluster (merged); pruned clusters are absent
    quality: dict[int, float] = field(default_factory=dict)  # mean of the prune column per cluster
    notes: list[str] = field(default_factory=list)  # what was adjusted (k reduced, ...)

    def key(self, cluster: int) -> str:
        return f"c{self.super_of[cluster]:03d}" if cluster in self.super_of else "pruned"


def training_rows(n: int, cfg: ClimbConfig) -> np.ndarray:
    """Positions (sorted) of the seeded sample k-means is trained on, among n documents in (part, id) order."""
    if n <= cfg.train_sample:
        return np.arange(n)
    return np.sort(np.random.default_rng(cfg.seed).choice(n, cfg.train_sample, replace=False))


def train(vectors: np.ndarray, k: int, cfg: ClimbConfig) -> np.ndarray:
    """The centroids (k, dim) of faiss k-means trained on `vectors` (the training sample)."""
    import faiss

    faiss.omp_set_num_threads(1)  # the same float sums in the same order: reproducible centroids
    model = faiss.Kmeans(vectors.shape[1], k, niter=cfg.iterations, seed=cfg.seed + 1, verbose=False,
                         min_points_per_centroid=1, max_points_per_centroid=1 << 30)
    model.train(np.ascontiguousarray(vectors, dtype=np.float32))
    return model.centroids.copy()


def assign(vectors: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """The nearest centroid of each vector (L2)."""
    import faiss

    faiss.omp_set_num_threads(1)
    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    _, labels = index.search(np.ascontiguousarray(vectors, dtype=np.float32), 1)
    return labels[:, 0].astype(np.int64)


def kmeans(vectors: np.ndarray, k: int, cfg: ClimbConfig) -> tuple[np.ndarray, np.ndarray]:
    """(assignment, centroids) of vectors held in memory (the release trains and assigns per shard)."""
    centroids = train(vectors[training_rows(len(vectors), cfg)], k, cfg)
    return assign(vectors, centroids), centroids


def build_clusters(centroids: np.ndarray, means: dict[int, float], cfg: ClimbConfig,
                   notes: list[str] | None = None) -> Clusters:
    """Prune and merge the clusters that received documents (`means`: cluster -> mean of the prune column)."""
    notes = list(notes or [])
    present = sorted(means)
    if len(present) < len(centroids):
        notes.append(f"{len(centroids) - len(present)} of {len(centroids)} clusters received no document")
    kept = present
    if cfg.prune is not None and present:
        kept = [c for c in present if means[c] >= cfg.prune.min]
        if not kept:
            best = max(means.values())
            raise ValueError(f"stages.mixture.climb.prune.min: every cluster was pruned (the best cluster's mean "
                             f"{cfg.prune.column} is {best:.4f} < {cfg.prune.min})")
        if len(kept) < len(present):
            notes.append(f"{len(present) - len(kept)} clusters pruned: mean {cfg.prune.column} < {cfg.prune.min}")
    super_of = merge(centroids, kept, cfg.merge_distance)
    return Clusters(centroids, super_of, means, notes)


def merge(centroids: np.ndarray, kept: list[int], distance: float | None) -> dict[int, int]:
    """Super-cluster of each kept cluster: clusters with centroids closer than `distance` are joined
    (single linkage); super-clusters are numbered by their smallest member."""
    parent = {c: c for c in kept}

    def find(c: int) -> int:
        while parent[c] != c:
            parent[c] = parent[parent[c]]
            c = parent[c]
        return c

    if distance is not None:
        for i, a in enumerate(kept):
            for b in kept[i + 1:]:
                if np.linalg.norm(centroids[a] - centroids[b]) < distance:
                    ra, rb = find(a), find(b)
                    parent[max(ra, rb)] = min(ra, rb)
    roots = sorted({find(c) for c in kept})
    number = {r: i for i, r in enumerate(roots)}
    return {c: number[find(c)] for c in kept}


def fit_predictor(weights: np.ndarray, objective: np.ndarray, seed: int):
    """LightGBM as in the paper: depth 4, >= 5 samples per leaf, L1 + L2, early stopping after 20 rounds
    without improvement on a held-out fifth (when there are enough runs to hold one out)."""
    import lightgbm

    model = lightgbm.LGBMRegressor(max_depth=4, num_leaves=15, min_child_samples=5, reg_alpha=0.01, reg_lambda=0.1,
                                   learning_rate=0.05, n_estimators=500, min_data_in_bin=1, deterministic=True,
                                   force_row_wise=True, n_jobs=1, random_state=seed, verbose=-1)
    if len(weights) >= 20:
        held = np.random.default_rng(seed).permutation(len(weights))
        cut = len(weights) // 5
        model.fit(weights[held[cut:]], objective[held[cut:]], eval_X=weights[held[:cut]], eval_y=objective[held[:cut]],
                  callbacks=[lightgbm.early_stopping(20, verbose=False)])
    else:
        model.fit(weights, objective)
    return model


def sample(rng: np.random.Generator, alpha: np.ndarray, n: int, cfg: SearchConfig) -> np.ndarray:
    """n candidate mixtures (rows sum to 1): `flat_share` from a flat Dirichlet, `sparse_share` on 1 to
    `sparse_clusters` random clusters, the rest from the Dirichlet around the token shares (`alpha`),
    in that order. The broad draws let the search give a large weight to a cluster with few tokens."""
    k = len(alpha)
    flat = int(round(n * cfg.flat_share))
    sparse = min(int(round(n * cfg.sparse_share)), n - flat)
    parts = [rng.dirichlet(np.ones(k), flat)] if flat else []
    if sparse:
        members = rng.integers(1, min(cfg.sparse_clusters, k) + 1, sparse)
        rank = np.argsort(rng.random((sparse, k)), axis=1).argsort(axis=1)  # a random order of the clusters
        gamma = rng.gamma(1.0, size=(sparse, k)) * (rank < members[:, None])
        parts.append(gamma / np.maximum(gamma.sum(axis=1, keepdims=True), 1e-300))
    parts.append(rng.dirichlet(alpha, n - flat - sparse))
    return np.vstack(parts)


def search(shares: np.ndarray, evaluate, cfg: SearchConfig) -> dict:
    """Iterative bootstrapping. `evaluate(weights, run)` returns (objective or None, status); lower is better.

    Returns {"weights", "predicted", "history"}; history rows are {iteration, run, weights, objective,
    predicted, status}."""
    k = len(shares)
    rng = np.random.default_rng(cfg.seed)
    alpha = np.maximum(cfg.concentration * k * shares / max(shares.sum(), 1e-12), 1e-3)
    history: list[dict] = []
    predictor = None
    for iteration, runs in enumerate(cfg.runs, start=1):
        if predictor is None:
            picked, predicted = sample(rng, alpha, runs, cfg), [None] * runs
        else:
            pool = sample(rng, alpha, cfg.candidates, cfg)
            scores = predictor.predict(pool)
            top = np.argsort(scores, kind="stable")[: max(cfg.top, runs)]
            chosen = np.sort(rng.choice(top, min(runs, len(top)), replace=False))
            picked, predicted = pool[chosen], [float(scores[i]) for i in chosen]
        for w, p in zip(picked, predicted):
            objective, status = evaluate(w, len(history))
            history.append({"iteration": iteration, "run": len(history), "weights": [float(x) for x in w],
                            "objective": objective, "predicted": p, "status": status})
        done = [h for h in history if h["objective"] is not None]
        if len(done) >= 2:
            predictor = fit_predictor(np.array([h["weights"] for h in done]), np.array([h["objective"] for h in done]),
                                      cfg.seed)
    done = [h for h in history if h["objective"] is not None]
    if not done:
        raise RuntimeError("stages.mixture.climb.search: every proxy run failed: "
                           + "; ".join(sorted({h["status"] for h in history}))[:500])
    if predictor is None:  # a single successful run: nothing to learn from
        best = min(done, key=lambda h: h["objective"])
        return {"weights": best["weights"], "predicted": best["objective"], "history": history}
    measured = np.array([h["objective"] for h in done])
    final = np.vstack([np.array([h["weights"] for h in done]), sample(rng, alpha, cfg.candidates, cfg)])
    scores = predictor.predict(final)
    # the trees' predictions are piecewise constant: among mixtures tied for the best prediction, take the
    # best measured run if one is tied, else the first tied draw
    tied = np.flatnonzero(scores <= scores.min() + 1e-12)
    runs_tied = tied[tied < len(done)]
    best = int(runs_tied[np.argmin(measured[runs_tied])] if len(runs_tied) else tied[0])
    return {"weights": [float(x) for x in final[best]], "predicted": float(scores[best]), "history": history}
