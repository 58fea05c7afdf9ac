"""The mixture stage: budgeted sampling stratified by source/domain, top-k, upsampling, determinism."""

import json
from collections import Counter

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from pipelines import stats
from pipelines.config import ConfigError, load_config
from pipelines.mixture import plan as plan_module
from pipelines.mixture import sampling
from pipelines.mixture.config import MixtureConfig
from pipelines.mixture.tasks import FEATURE_SCHEMA
from pipelines.release import run_release
from pipelines.spill import SpillConfig, duckdb_spilling
from tests.conftest import ROOT

SAMPLE = ROOT / "tests/data/sample"


def test_fill_takes_until_target_in_seeded_order():
    tokens = np.array([10, 10, 10, 10, 10])
    tiebreak = sampling.seeded_keys([f"d{i}" for i in range(5)], seed=3)
    copies = sampling.fill(tokens, None, tiebreak, target=27, upsample=True, seed=0)
    assert copies.sum() == 3 and copies.max() == 1  # 30 is the closest to 27: sampled without replacement
    taken = set(np.flatnonzero(copies))
    assert taken == set(np.argsort(tiebreak)[:3])  # the seeded order, not the input order
    other = sampling.fill(tokens, None, sampling.seeded_keys([f"d{i}" for i in range(5)], seed=4), 27, True, 0)
    assert other.sum() == 3  # another seed may take other documents, never a different amount


def test_fill_top_k_and_ties():
    tokens = np.array([5, 5, 5, 5])
    score = np.array([2.0, 9.0, 9.0, 1.0])
    tiebreak = np.array([4, 3, 2, 1], dtype=np.uint64)
    copies = sampling.fill(tokens, score, tiebreak, target=10, upsample=True, seed=0)
    assert list(copies) == [0, 1, 1, 0]  # the two 9s
    copies = sampling.fill(tokens, score, tiebreak, target=5, upsample=True, seed=0)
    assert list(copies) == [0, 0, 1, 0]  # a tie at 9 goes to the smaller tie-break key


def test_fill_upsamples_a_short_stratum_with_replacement():
    tokens = np.array([10, 20, 30])
    copies = sampling.fill(tokens, None, np.arange(3, dtype=np.uint64), target=200, upsample=True, seed=7)
    assert (copies >= 1).all() and (copies * tokens).sum() == 200  # small documents fill the last gap
    again = sampling.fill(tokens, None, np.arange(3, dtype=np.uint64), target=200, upsample=True, seed=7)
    assert list(copies) == list(again)
    assert list(sampling.fill(tokens, None, np.arange(3, dtype=np.uint64), 200, upsample=False, seed=7)) == [1, 1, 1]
    capped = sampling.fill(tokens, None, np.arange(3, dtype=np.uint64), 1000, upsample=True, seed=7, max_copies=2)
    assert list(capped) == [2, 2, 2]  # the repeat cap wins over the target


def test_fill_lands_within_one_percent_of_the_target():
    rng = np.random.default_rng(0)
    tokens = rng.integers(50, 5000, size=400)  # a long tail like web pages
    for target in (20_000, 300_000, 3_000_000):  # below the pool, near it, far above it (upsampled)
        copies = sampling.fill(tokens, None, sampling.seeded_keys([str(i) for i in range(400)], 0), target, True, 1)
        assert abs((copies * tokens).sum() - target) <= 0.01 * target


def _features(rows, seed=0):
    rows = [{**r, "tiebreak": int(k)} for r, k in zip(rows, sampling.seeded_keys([r["id"] for r in rows], seed))]
    return pa.Table.from_pylist(rows, schema=FEATURE_SCHEMA)


def plan(features: pa.Table, cfg: MixtureConfig, memory: SpillConfig | None = None):
    """(selection rows, strata rows) of the plan's DuckDB selection over `features`."""
    with duckdb_spilling(memory or SpillConfig()) as con:
        con.register("features", _with_rows(features))
        strata, selection = plan_module.select(con, cfg, "features")
        return selection.read_all().to_pylist(), strata


def _with_rows(features: pa.Table) -> pa.Table:
    """The features as the plan reads them: each row's position in its part (ids may repeat)."""
    seen = Counter()
    rows = []
    for part in features.column("part").to_pylist():
        rows.append(seen[part])
        seen[part] += 1
    return features.append_column("row_in_part", pa.array(rows, pa.int64()))


def _reference(features: pa.Table, cfg: MixtureConfig) -> list[tuple[str, str, int]]:
    """(part, id, copies) of the selection as the plan computed it in memory before it ran in DuckDB: every
    stratum's candidates, in (part, id) order, through sampling.fill."""
    features = features.sort_by([("part", "ascending"), ("id", "ascending")])
    columns = [features.column(s).to_pylist() for s in cfg.strata]
    keys = np.array(["/".join("none" if v is None else str(v) for v in values) for values in zip(*columns)]
                    if cfg.strata else ["all"] * features.num_rows, dtype=object)
    tokens = features.column("tokens").to_numpy(zero_copy_only=False).astype(np.int64)
    candidate = np.array([e is None for e in features.column("excluded_by").to_pylist()], dtype=bool)
    order = features.column("order_score").to_numpy(zero_copy_only=False) if cfg.top_k_by else None
    tiebreak = features.column("tiebreak").to_numpy(zero_copy_only=False)
    names = sorted(set(keys))
    counted = candidate if cfg.shares == "after_where" else np.ones(len(keys), dtype=bool)
    wanted = sampling.targets({s: int(tokens[(keys == s) & counted].sum()) for s in names}, cfg.budget_tokens,
                              cfg.weights)
    copies = np.zeros(len(keys), dtype=np.int64)
    for n, stratum in enumerate(names):
        index = np.flatnonzero((keys == stratum) & candidate)
        copies[index] = sampling.fill(tokens[index], None if order is None else order[index], tiebreak[index],
                                      wanted[stratum], cfg.upsample, seed=cfg.seed * 1_000_003 + n,
                                      max_copies=cfg.max_repeats)
    return list(zip(features.column("part").to_pylist(), features.column("id").to_pylist(), copies.tolist()))


def test_streamed_plan_selects_what_the_in_memory_fill_selects(monkeypatch):
    """Batches of 7 rows (strata and runs cut across batches), ties in score, NaN scores, zero-token and huge
    documents, short strata (upsampled or not), ids repeated in a part: the same copies, row for row, as
    sampling.fill over each whole stratum."""
    monkeypatch.setattr(plan_module, "BATCH", 7)
    rng = np.random.default_rng(5)
    for trial in range(24):
        n = int(rng.integers(1, 120))
        scores = rng.choice([0.1, 0.5, 0.9, np.nan], n) if trial % 2 else rng.random(n)
        ids = [f"d{rng.integers(4)}" if trial % 3 == 1 else f"d{rng.integers(10 ** 6)}-{i}" for i in range(n)]
        rows = [{"id": ids[i], "part": f"part-{rng.integers(3):05d}",
                 "source": str(rng.choice(["a", "b", "c"])), "domain": rng.choice(["x", None]),
                 "tokens": int(rng.choice([0, 5, 50, 400, 5000])), "excluded_by": rng.choice([None, None, "where.q"]),
                 "order_score": float(scores[i]), "quality": None} for i in range(n)]
        total = sum(r["tokens"] for r in rows)
        cfg = MixtureConfig(budget_tokens=max(1, int(total * rng.choice([0.05, 0.3, 0.9, 1.5]))),
                            strata=[[], ["source"], ["source", "domain"]][trial % 3],
                            top_k_by=["preselect_score"] if trial % 4 < 2 else [], upsample=trial % 5 != 0,
                            shares=["after_where", "before_where"][trial % 2], seed=trial, max_repeats=3)
        features = _features(rows, cfg.seed)
        selection, strata = plan(features, cfg)
        assert [(r["part"], r["id"], r["copies"]) for r in selection] == _reference(features, cfg), trial
        assert len(selection) == n
        order = features.sort_by([("part", "ascending"), ("id", "ascending")]).column("tokens").to_pylist()
        by = Counter()
        for r, tokens in zip(selection, order):
            by[r["stratum"]] += r["copies"] * tokens
        assert {s["stratum"]: s["selected_tokens"] for s in strata} == {s["stratum"]: by[s["stratum"]]
                                                                           for s in strata}


def test_plan_spills_under_a_small_memory_limit(tmp_path):
    """200k documents planned in DuckDB capped at 32 MB: without a spill folder DuckDB runs out of memory,
    with ours it spills and selects what an uncapped plan selects; the folder is removed after."""
    n = 200_000
    ids = [f"doc-{i:07d}" for i in range(n)]
    features = pa.table({"id": ids, "part": [f"part-{i % 8:05d}" for i in range(n)],
                         "source": [("web", "news")[i % 2] for i in range(n)], "domain": pa.nulls(n, pa.string()),
                         "tokens": np.arange(n) % 997, "excluded_by": pa.nulls(n, pa.string()),
                         "order_score": pa.nulls(n, pa.float64()), "quality": pa.nulls(n, pa.float64()),
                         "tiebreak": sampling.seeded_keys(ids, 0)}, schema=FEATURE_SCHEMA)
    cfg = MixtureConfig(budget_tokens=n * 250)
    con = duckdb.connect(config={"memory_limit": "32MB", "temp_directory": "", "threads": 1})
    con.register("features", _with_rows(features))
    with pytest.raises(duckdb.OutOfMemoryException):
        plan_module.select(con, cfg, "features")[1].read_all()
    small = SpillConfig(memory_limit="32MB", spill_dir=str(tmp_path), threads=1)
    assert plan(features, cfg, small) == plan(features, cfg)
    assert list(tmp_path.iterdir()) == []



def test_plan_is_proportional_to_token_shares_and_records_upsampling():
    rows = [{"id": f"a{i}", "part": "part-00000", "source": "a", "domain": "law", "tokens": 100,
             "excluded_by": None, "order_score": None} for i in range(30)]
    rows += [{"id": f"b{i}", "part": "part-00001", "source": "b", "domain": "coding", "tokens": 100,
              "excluded_by": None if i < 2 else "where.dataman_overall", "order_score": None} for i in range(10)]
    cfg = MixtureConfig(budget_tokens=2000, strata=["source"], shares="before_where")
    selection, strata = plan(_features(rows), cfg)
    by = {s["stratum"]: s for s in strata}
    assert by["a"]["target_tokens"] == 1500 and by["a"]["selected_tokens"] == 1500 and by["a"]["upsampled_copies"] == 0
    # b has 25 % of the pool's tokens but only 2 candidates (200 tokens): upsampled to its 500
    assert by["b"]["target_tokens"] == 500 and by["b"]["selected_tokens"] == 500 and by["b"]["upsampled_copies"] == 3
    assert {r["id"] for r in selection if r["stratum"] == "b" and r["copies"]} == {"b0", "b1"}
    assert {r["reason"] for r in selection if r["stratum"] == "b" and not r["copies"]} == {"where.dataman_overall"}
    # row order does not matter; weights override the shares
    shuffled = _features([rows[i] for i in np.random.default_rng(0).permutation(len(rows))])
    assert plan(shuffled, cfg) == (selection, strata)
    _, strata = plan(_features(rows), MixtureConfig(budget_tokens=2000, strata=["source", "domain"],
                                                    weights={"a/law": 1, "b/coding": 3}, upsample=False))
    assert [(s["stratum"], s["target_tokens"], s["shortfall_tokens"]) for s in strata] == \
        [("a/law", 500, 0), ("b/coding", 1500, 1300)]


def _skewed_rows():
    """a: 20 documents of 100 tokens, all candidates; b: 80 of them (80 % of the tokens), 5 candidates."""
    rows = [{"id": f"a{i:02}", "part": "part-00000", "source": "a", "domain": None, "tokens": 100,
             "excluded_by": None, "order_score": None} for i in range(20)]
    rows += [{"id": f"b{i:02}", "part": "part-00001", "source": "b", "domain": None, "tokens": 100,
              "excluded_by": None if i < 5 else "where.dataman_overall", "order_score": None} for i in range(80)]
    return rows


def test_plan_shares_are_measured_after_where_by_default():
    rows = _skewed_rows()
    columns = ["stratum", "pool_docs", "pool_tokens", "weight", "target_tokens", "candidate_tokens",
               "selected_tokens", "upsampled_copies"]
    _, strata = plan(_features(rows), MixtureConfig(budget_tokens=2000))
    # candidates: a 2000 tokens, b 500 -> shares 0.8 / 0.2 of 2000; b fills its 400 from 4 of its 5
    assert [[s[c] for c in columns] for s in strata] == [["a", 20, 2000, 0.8, 1600, 2000, 1600, 0],
                                                        ["b", 80, 8000, 0.2, 400, 500, 400, 0]]
    selection, strata = plan(_features(rows), MixtureConfig(budget_tokens=2000, shares="before_where"))
    # all documents: a 2000, b 8000 -> 0.2 / 0.8; b's 500 candidate tokens are copied up to 1600 (11 extra copies)
    assert [[s[c] for c in columns] for s in strata] == [["a", 20, 2000, 0.2, 400, 2000, 400, 0],
                                                        ["b", 80, 8000, 0.8, 1600, 500, 1600, 11]]
    assert sum(r["copies"] for r in selection if r["stratum"] == "b") == 16


def test_plan_with_no_strata_is_one_global_stratum():
    rows = _skewed_rows()
    selection, strata = plan(_features(rows), MixtureConfig(budget_tokens=2000, strata=[]))
    assert [(s["stratum"], s["pool_docs"], s["pool_tokens"], s["weight"], s["candidates"], s["selected_tokens"],
             s["upsampled_copies"]) for s in strata] == [("all", 100, 10000, 1.0, 25, 2000, 0)]
    assert len(selection) == 100 and {r["stratum"] for r in selection} == {"all"}  # apply finds every document
    assert sum(r["copies"] for r in selection) == 20


def _jsonl(path, prefix, texts):
    path.write_text("\n".join(json.dumps({"id": f"{prefix}{i}", "text": t}) for i, t in enumerate(texts)) + "\n")


def test_release_with_mixture_adds_up_and_hits_the_budget(sample_preselect_model, tmp_path):
    words = "river stone bread lamp cloud garden window paper music winter".split()
    rng = np.random.default_rng(1)
    _jsonl(tmp_path / "web.jsonl", "w", [" ".join(rng.choice(words, 60)) for _ in range(60)])
    _jsonl(tmp_path / "books.jsonl", "b", [" ".join(rng.choice(words, 200)) for _ in range(5)])
    config = tmp_path / "m.yaml"
    config.write_text(f"""
release: m
output: {tmp_path / 'out'}
runner: {{kind: local, workers: 2}}
sources:
  - {{name: web, paths: ["{tmp_path / 'web.jsonl'}"], format: jsonl}}
  - {{name: books, paths: ["{tmp_path / 'books.jsonl'}"], format: jsonl}}
stages:
  score: {{preselect: {{model: {sample_preselect_model}}}}}
  mixture:
    budget_tokens: 4000
    strata: [source]
    top_k_by: [preselect_score]
  tokenize: {{seq_len: 256}}
""")
    cfg = load_config(str(config))
    run_release(cfg, progress=False)
    funnel = stats.funnel(cfg.output)
    assert funnel["adds_up"] and list(funnel["stages"]) == ["read", "score", "mixture", "tokenize"]
    con = stats.connect(cfg.output)
    strata = dict(con.execute(f"SELECT stratum, selected_tokens FROM '{cfg.output}/mixture/_plan/strata.parquet'")
                  .fetchall())
    pool = dict(con.execute(f"SELECT source, sum(tokens) FROM '{cfg.output}/mixture/_features/*.parquet' GROUP BY 1")
                .fetchall())
    assert abs(strata["books"] / 4000 - pool["books"] / sum(pool.values())) < 0.05  # proportional to its share
    tokens = con.execute("SELECT sum(doc_tokens) FROM (SELECT DISTINCT part, doc_id, doc_tokens FROM tokens)"
                         ).fetchone()
    assert tokens[0] is not None
    # the web documents taken are the best-scored ones
    taken = {r[0] for r in con.execute("SELECT id FROM docs_mixture").fetchall()}
    scores = con.execute("SELECT id, preselect_score FROM docs_score WHERE source = 'web'").fetchall()
    best = max(s for i, s in scores if i not in taken)
    assert all(s >= best for i, s in scores if i in taken)
    reasons = {r[0] for r in con.execute("SELECT reason FROM rejects WHERE stage = 'mixture'").fetchall()}
    assert reasons == {"over_budget"}
    # tokenized once: the tokenize stage took the mixture's token ids, and encoding afresh gives the same bytes
    [(cached, kept)] = con.execute("SELECT sum(value) FILTER (WHERE metric = 'cached_docs'), sum(value) FILTER "
                                   "(WHERE metric = 'docs_out') FROM stats WHERE stage = 'tokenize'").fetchall()
    assert cached == kept > 0
    tokens = {p: p.read_bytes() for p in (tmp_path / "out/tokenize").rglob("*")
              if p.is_file() and "_stats" not in str(p)}  # the stats count cached_docs
    for path in [*(tmp_path / "out/mixture/_token_ids").iterdir(), *(tmp_path / "out/tokenize").glob("_SUCCESS.*")]:
        path.unlink()
    run_release(cfg, progress=False)
    assert {p: p.read_bytes() for p in tokens} == tokens
    assert stats.connect(cfg.output).execute("SELECT sum(value) FROM stats WHERE stage = 'tokenize' AND "
                                             "metric = 'cached_docs'").fetchone()[0] == 0
    # a rerun with more workers changes nothing
    before = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file() and "_logs" not in str(p)}
    cfg = load_config(str(config), {"runner.workers": 1})
    run_release(cfg, progress=False)
    after = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file() and "_logs" not in str(p)}
    assert before == after


def test_release_with_one_global_stratum(tmp_path):
    words = "river stone bread lamp cloud garden window paper music winter".split()
    rng = np.random.default_rng(2)
    _jsonl(tmp_path / "web.jsonl", "w", [" ".join(rng.choice(words, 50)) for _ in range(20)])
    _jsonl(tmp_path / "books.jsonl", "b", [" ".join(rng.choice(words, 50)) for _ in range(20)])
    config = tmp_path / "m.yaml"
    config.write_text(f"""
release: m
output: {tmp_path / 'out'}
runner: {{kind: local, workers: 1}}
sources:
  - {{name: web, paths: ["{tmp_path / 'web.jsonl'}"], format: jsonl}}
  - {{name: books, paths: ["{tmp_path / 'books.jsonl'}"], format: jsonl}}
stages:
  mixture: {{budget_tokens: 1000, strata: []}}
""")
    cfg = load_config(str(config))
    run_release(cfg, progress=False)  # apply used to raise KeyError: the plan had no row for any document
    assert stats.funnel(cfg.output)["adds_up"]
    con = stats.connect(cfg.output)
    assert con.execute(f"SELECT stratum, pool_docs FROM '{cfg.output}/mixture/_plan/strata.parquet'"
                       ).fetchall() == [("all", 40)]
    assert 0 < con.execute("SELECT count(*) FROM docs_mixture").fetchone()[0] < 40


def test_mixture_config_errors(tmp_path):
    _jsonl(tmp_path / "d.jsonl", "d", ["text"])
    base = f"""
release: m
output: {tmp_path / 'out'}
sources: [{{name: d, paths: ["{tmp_path / 'd.jsonl'}"], format: jsonl}}]
stages:
  mixture: {{budget_tokens: 10, %s}}
"""
    config = tmp_path / "m.yaml"
    for extra, message in [("strata: [domain]", r"stages\.mixture\.strata\[0\]: domain is not produced"),
                           ("top_k_by: [dataman_overall]", r"stages\.mixture\.top_k_by\[0\]"),
                           ("weights: {a: -1}", r"stages\.mixture\.weights"),
                           ("where: [{column: preselect_score, top_fraction: 0.1}]", r"stages\.mixture\.where")]:
        config.write_text(base % extra)
        with pytest.raises(ConfigError, match=message):
            load_config(str(config))
