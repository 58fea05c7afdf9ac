"""CLIMB: embedders, clustering (purity on the sample), the search on a problem with a known optimum,
the proxies (built-in and external command), and the mixture stage end to end."""

import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import stats
from pipelines.config import ConfigError, load_config
from pipelines.mixture import climb
from pipelines.mixture.climb_plan import searched_clusters
from pipelines.mixture.config import ClimbConfig, ProxyConfig, SearchConfig
from pipelines.mixture.proxy import CommandProxy
from pipelines.readers import SourceConfig
from pipelines.release import run_release
from scorers.embed import EmbedConfig, embed
from tests.conftest import ROOT

SAMPLE = ROOT / "tests/data/sample"
VALIDATION = ROOT / "tests/data/validation/python-docs.jsonl"
CONFIG = f"""
release: c
output: {{out}}
runner: {{{{kind: local, workers: {{workers}}}}}}
sources: [{{{{name: crawl, paths: ["{SAMPLE}/*.warc.gz"], format: warc}}}}]
stages:
  extract: {{{{}}}}
  mixture:
    budget_tokens: 250000
    strata: [cluster]
    max_repeats: 2
    climb:
      clusters: 6
      search:
        runs: [16, 8]
        candidates: 500
        proxy: {{{{validation: {{{{name: val, paths: ["{VALIDATION}"], format: jsonl}}}}, train_chars: 200000}}}}
"""


@pytest.fixture(scope="module")
def climb_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("climb")
    config = tmp / "c.yaml"
    config.write_text(CONFIG.format(out=tmp / "out", workers=2))
    cfg = load_config(str(config))
    run_release(cfg, progress=False)
    return cfg, tmp


def _host(url: str) -> str:
    return url.split("/")[2]


def test_embedders_place_similar_texts_together():
    texts = ["The server logs every request to the access log file.",
             "Every request is written to the server's access log.",
             "Le serveur enregistre chaque requête dans le journal.", ""]
    v = embed(texts, EmbedConfig())
    assert v.shape == (4, 256) and v.dtype == np.float32
    assert v[0] @ v[1] > 0.5 > v[0] @ v[2] and not v[3].any()
    assert np.array_equal(v, embed(texts, EmbedConfig()))  # seeded projection: the same vectors every time
    pytest.importorskip("sentence_transformers")
    m = embed(texts[:3], EmbedConfig(backend="minilm"))
    assert m.shape == (3, 384) and m[0] @ m[1] > m[0] @ m[2]


def test_clusters_recover_the_sample_families(climb_run):
    cfg, _ = climb_run
    con = stats.connect(cfg.output)
    rows = con.execute("SELECT m.stratum, d.url FROM mixture m JOIN docs_extract d USING (id)").fetchall()
    by_cluster: dict[str, Counter] = {}
    for stratum, url in rows:
        by_cluster.setdefault(stratum, Counter())[_host(url)] += 1
    purity = sum(c.most_common(1)[0][1] for c in by_cluster.values()) / len(rows)
    assert len(rows) == 502 and purity >= 0.8, by_cluster  # hosts: debian sources, apache, postgres, python docs
    clusters = con.execute("SELECT count(*), sum(docs) FROM clusters").fetchone()
    assert clusters == (6, 502)


def test_mixture_outputs_budget_and_repeat_cap(climb_run):
    cfg, _ = climb_run
    out = Path(cfg.output)
    report = json.loads((out / "mixture/mixture.json").read_text())
    assert len(report["history"]) == 24 and report["objective"]["failed_runs"] == 0
    assert [h["iteration"] for h in report["history"]] == [1] * 16 + [2] * 8
    assert all(h["predicted"] is not None for h in report["history"][16:])
    assert abs(sum(report["weights"].values()) - 1) < 1e-5  # rounded to 6 places
    assert abs(report["sampled"]["selected_tokens"] - 250_000) <= 2500  # within 1 % of the budget
    assert (out / "mixture/mixture.png").read_bytes()[:4] == b"\x89PNG"
    con = stats.connect(cfg.output)
    assert con.execute("SELECT max(copies) FROM mixture").fetchone()[0] <= 2
    # the search favours the cluster holding the Python docs (the validation set's family)
    python = con.execute("SELECT m.stratum FROM mixture m JOIN docs_extract d USING (id) "
                         "WHERE d.url LIKE 'https://docs.python.org/%' GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
                         ).fetchone()[0]
    share = con.execute(f"SELECT sum(tokens) FILTER (WHERE stratum = '{python}') / sum(tokens) FROM clusters"
                        ).fetchone()[0]
    assert report["weights"][python] > share
    assert stats.funnel(cfg.output)["adds_up"]
    assert con.execute("SELECT count(DISTINCT cluster) FROM docs_mixture").fetchone()[0] >= 2


def test_same_bytes_with_one_worker(climb_run):
    cfg, tmp = climb_run
    config = tmp / "c1.yaml"
    config.write_text(CONFIG.format(out=tmp / "out1", workers=1))
    run_release(load_config(str(config)), progress=False)
    for name in ("mixture/mixture.json", "mixture/mixture.png", "mixture/_plan/selection.parquet",
                 "mixture/clusters.parquet", "mixture/part-00000.parquet"):
        assert (tmp / "out" / name).read_bytes() == (tmp / "out1" / name).read_bytes(), name


def test_search_finds_a_known_optimum():
    best = np.array([0.5, 0.3, 0.1, 0.05, 0.05])

    def objective(w, run):
        return float(((w - best) ** 2).sum()), "ok"

    shares = np.full(5, 0.2)
    validation = SourceConfig(name="v", paths=["x"], format="jsonl")
    cfg = SearchConfig(runs=[64, 32, 16], proxy=ProxyConfig(validation=validation))
    found = climb.search(shares, objective, cfg)
    assert objective(np.array(found["weights"]), 0)[0] < 0.03  # the random start's mean is ~0.12
    first = np.mean([h["objective"] for h in found["history"] if h["iteration"] == 1])
    later = np.mean([h["objective"] for h in found["history"] if h["iteration"] == 3])
    assert later < first / 2  # the predictor's picks are far better than the Dirichlet samples


def test_search_finds_a_planted_small_good_cluster():
    """The best mixture puts ~50 % on a cluster holding 3 % of the tokens. Draws around the token shares
    (Dirichlet alpha 0.6 for it, 19.4 for the rest) hardly reach there; the broad draws do."""
    k, small = 20, 18
    shares = np.full(k, 0.97 / (k - 1))
    shares[small] = 0.03

    def objective(w, run):
        return float((w[small] - 0.5) ** 2), "ok"

    validation = SourceConfig(name="v", paths=["x"], format="jsonl")
    found = {}
    for name, extra in (("prior", {"flat_share": 0, "sparse_share": 0}), ("broad", {})):
        runs = [climb.search(shares, objective, SearchConfig(proxy=ProxyConfig(validation=validation), seed=seed,
                                                             **extra)) for seed in range(5)]
        found[name] = [r["weights"][small] for r in runs]
    assert found["broad"][0] >= 0.3, found  # the default config (seed 0)
    assert max(found["prior"]) < 0.3 < np.mean(found["broad"]), found
    broad = SearchConfig(proxy=ProxyConfig(validation=validation))
    pool = climb.sample(np.random.default_rng(0), np.full(k, 1.0), 1000, broad)
    assert pool.shape == (1000, k) and np.allclose(pool.sum(axis=1), 1)
    assert ((pool > 0).sum(axis=1) <= 3).sum() == 250  # sparse_share: 1 to 3 clusters
    assert np.array_equal(pool, climb.sample(np.random.default_rng(0), np.full(k, 1.0), 1000, broad))


def test_command_proxy_contract_failures_and_timeouts(tmp_path):
    script = tmp_path / "proxy.py"
    script.write_text("""
import json, os, sys, time
d = os.environ["GRISTMILL_PROXY_DIR"]
m = json.load(open(os.path.join(d, "mixture.json")))
if m["run"] == 1: sys.exit("trainer crashed")
if m["run"] == 2: time.sleep(30)
chars = sum(len(json.loads(l)["text"]) for l in open(os.path.join(d, "train.jsonl")))
json.dump({"objective": abs(m["weights"]["a"] - 0.7) + chars * 0}, open(os.path.join(d, "result.json"), "w"))
""")
    cfg = ProxyConfig(kind="command", command=[sys.executable, str(script)], timeout_seconds=2, train_chars=1000,
                      validation=SourceConfig(name="v", paths=[str(VALIDATION)], format="jsonl"))
    proxy = CommandProxy(cfg, [["alpha " * 50], ["beta " * 50]], ["a", "b"], str(tmp_path / "runs"))
    results = [proxy(np.array([w, 1 - w]), run) for run, w in enumerate([0.2, 0.5, 0.6, 0.7])]
    assert results[0][0] == pytest.approx(0.5) and results[0][1] == "ok" and results[3][0] == pytest.approx(0)
    assert results[1][0] is None and "trainer crashed" in results[1][1]
    assert results[2] == (None, "timeout after 2s")
    written = json.loads((tmp_path / "runs/run-0000/mixture.json").read_text())
    assert written["weights"] == {"a": 0.2, "b": 0.8}


def test_few_documents_and_pruning(tmp_path):
    """k-means trained and applied per shard as the release runs them: 3 documents for 16 clusters reduce k."""
    from pipelines.mixture.clusters import AssignTask, KmeansTask
    from pipelines.mixture.config import MixtureConfig
    from pipelines.mixture.tasks import EMBEDDING_SCHEMA, FEATURE_SCHEMA
    from pipelines.shard_task import ShardTask

    vectors = np.eye(3, 8, dtype=np.float32)
    rows = [{"id": f"d{i}", "part": "part-00000", "tokens": 10} for i in range(3)]
    (tmp_path / "mixture/_features").mkdir(parents=True)
    (tmp_path / "mixture/_embeddings").mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=FEATURE_SCHEMA), tmp_path / "mixture/_features/part-00000.parquet")
    pq.write_table(pa.Table.from_pylist([{"id": r["id"], "embedding": v.astype("<f2").tobytes()}
                                         for r, v in zip(rows, vectors)], schema=EMBEDDING_SCHEMA),
                   tmp_path / "mixture/_embeddings/part-00000.parquet")
    cfg = MixtureConfig(budget_tokens=10, strata=["cluster"], climb=ClimbConfig(clusters=16))
    shard = ShardTask("part-00000", SourceConfig(name="s", paths=["x.jsonl"], format="jsonl"), "x.jsonl", 0, (),
                      str(tmp_path))
    KmeansTask(str(tmp_path), cfg, "f", ("part-00000",)).run()
    AssignTask(shard, cfg, "f").run()
    kmeans = json.loads((tmp_path / "mixture/_kmeans.json").read_text())
    assigned = pq.read_table(tmp_path / "mixture/_assigned/part-00000.parquet")
    assert len(kmeans["centroids"]) == 3 and "k reduced to 3" in kmeans["notes"][0]
    assert sorted(assigned.column("cluster").to_pylist()) == [0, 1, 2]
    assert assigned.column("similarity").to_pylist() == pytest.approx([1.0, 1.0, 1.0], abs=1e-3)
    centroids = np.asarray(kmeans["centroids"], dtype=np.float32)
    means = {c: q for c, q in zip(assigned.column("cluster").to_pylist(), [0.9, 0.1, 0.2])}
    cfg = ClimbConfig.model_validate({"clusters": 3, "prune": {"column": "preselect_score", "min": 0.5}})
    pruned = climb.build_clusters(centroids, means, cfg)
    assert sorted(pruned.key(c) for c in means) == ["c000", "pruned", "pruned"]
    assert climb.build_clusters(centroids, {0: 0.9}, cfg).notes[0] == "2 of 3 clusters received no document"
    cfg = ClimbConfig.model_validate({"clusters": 3, "prune": {"column": "preselect_score", "min": 0.95}})
    with pytest.raises(ValueError, match=r"prune\.min: every cluster was pruned"):
        climb.build_clusters(centroids, means, cfg)
    merged = climb.merge(np.array([[0, 0], [0.1, 0], [5, 5]], dtype=float), [0, 1, 2], distance=1.0)
    assert merged == {0: 0, 1: 0, 2: 1}


def test_climb_config_errors(tmp_path):
    config = tmp_path / "c.yaml"
    text = CONFIG.format(out=tmp_path / "out", workers=1)
    config.write_text(text.replace(str(VALIDATION), str(tmp_path / "missing.jsonl")))
    with pytest.raises(ConfigError, match=r"climb\.search\.proxy\.validation\.paths\[0\]: no file matches"):
        load_config(str(config))
    config.write_text(text.replace("strata: [cluster]", "strata: [source]"))
    with pytest.raises(ConfigError, match=r"stages\.mixture\.strata: \[cluster\]"):
        load_config(str(config))


def test_the_search_weighs_candidates_only():
    """Cluster c has no document that `where` keeps: the search gives it no weight to find; cluster a's prior
    counts its candidates' tokens only (shares after where), or all of them (before where)."""
    totals = {"a": (1, 100, 1000), "b": (1, 300, 300), "c": (0, 0, 500), "pruned": (0, 0, 50)}  # candidates, their
    kept, prior = searched_clusters(totals, "after_where")                                  # tokens, all tokens
    assert kept == ["a", "b"] and prior.tolist() == [100, 300]
    assert searched_clusters(totals, "before_where")[1].tolist() == [1000, 300]
