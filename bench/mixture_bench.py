"""Benchmark of the mixture stage's parts, same run, 1 core: embedding docs/s for each backend,
faiss k-means (ours) against scikit-learn's MiniBatchKMeans on the same embeddings, and the wall
time of one search iteration with the built-in n-gram proxy. Needs bench/_work/dedup-src (made by
dedup_bench.py: the extracted crawl sample)."""

import resource
import sys
import time
from functools import partial

import numpy as np
from extract_filter import ROOT, WORK

sys.path.insert(0, str(ROOT))
from pipelines import stats  # noqa: E402
from pipelines.mixture import climb  # noqa: E402
from pipelines.mixture.config import ClimbConfig, ProxyConfig, SearchConfig  # noqa: E402
from pipelines.mixture.proxy import NgramProxy  # noqa: E402
from pipelines.readers import SourceConfig  # noqa: E402
from pipelines.sample import sample_texts  # noqa: E402
from scorers.embed import EmbedConfig, embed  # noqa: E402


def timed(fn):
    began = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - began


def main() -> None:
    src = WORK / "dedup-src"
    if not (src / "manifest.json").exists():
        sys.exit("run dedup_bench.py first (it extracts the crawl sample into bench/_work/dedup-src)")
    texts = [t for (t,) in stats.connect(str(src)).execute("SELECT text FROM docs_extract ORDER BY id").fetchall()]
    corpus = texts * 10
    embed(texts[:10], EmbedConfig())  # load once (the projection matrix), as a worker does
    vectors, seconds = timed(lambda: embed(corpus, EmbedConfig()))
    print(f"hashed embedder: {len(corpus) / seconds:,.0f} docs/s per core ({len(corpus)} docs, "
          f"{sum(map(len, corpus)) / 1e6:.0f} MB, head {EmbedConfig().max_chars} chars)")
    try:
        embed(texts[:4], EmbedConfig(backend="minilm"))
        _, seconds = timed(lambda: embed(texts[:300], EmbedConfig(backend="minilm")))
        print(f"minilm embedder (CPU): {300 / seconds:,.1f} docs/s per core (300 docs)")
    except ImportError as exc:
        print(f"minilm embedder: not installed ({exc})")

    from sklearn.cluster import MiniBatchKMeans

    for k in (16, 64):
        cfg = ClimbConfig(clusters=k, iterations=25)
        (labels, _), ours = timed(partial(climb.kmeans, vectors, k, cfg))
        theirs_model, theirs = timed(partial(MiniBatchKMeans(k, random_state=0, n_init=1, max_iter=25,
                                                             batch_size=1024).fit, vectors))
        inertia = lambda lab, cen: float(((vectors - cen[lab]) ** 2).sum())  # noqa: E731
        centroids = np.stack([vectors[labels == c].mean(0) if (labels == c).any() else np.zeros(vectors.shape[1])
                              for c in range(k)])
        print(f"k-means k={k} on {len(vectors)} x {vectors.shape[1]}: faiss {ours:.2f}s (inertia "
              f"{inertia(labels, centroids):.0f}), sklearn MiniBatchKMeans {theirs:.2f}s (inertia "
              f"{inertia(theirs_model.labels_, theirs_model.cluster_centers_):.0f}); ratio {theirs / ours:.1f}x")

    labels, _ = climb.kmeans(vectors[: len(texts)], 8, ClimbConfig(clusters=8))
    pools = [[t for t, lab in zip(texts, labels) if lab == c] for c in range(8)]
    validation = SourceConfig(name="v", paths=[str(ROOT / "tests/data/validation/python-docs.jsonl")], format="jsonl")
    proxy_cfg = ProxyConfig(validation=validation, train_chars=300_000)
    proxy = NgramProxy(proxy_cfg, pools, [t for _, t in sample_texts(validation, 1000)])
    shares = np.array([sum(map(len, p)) for p in pools], dtype=float)
    search_cfg = SearchConfig(runs=[16], proxy=proxy_cfg)
    _, seconds = timed(lambda: climb.search(shares, proxy, search_cfg))
    print(f"one search iteration (16 proxy runs, byte 3-gram LM on 300k chars each, 8 clusters): {seconds:.1f}s "
          f"wall, {seconds / 16:.2f}s per proxy run")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
