"""Benchmark of the score stage: docs/s against raw fastText batch predict on the same texts, and the
n-gram loss backend's throughput, in the same run (1 worker). Needs models/preselect-sample.bin
(`make run` builds it)."""

import json
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
from extract_filter import ROOT, WORK, measure

sys.path.insert(0, str(ROOT))
from pipelines import stats  # noqa: E402
from scorers import fasttext_model  # noqa: E402
from scorers.ngram_lm import ByteNgramLM  # noqa: E402

MODEL = ROOT / "models/preselect-sample.bin"
CONFIG = """release: score-bench
output: {out}
runner: {{kind: local, workers: 1}}
sources: [{{name: docs, paths: ["{corpus}"], format: parquet}}]
stages: {{score: {{preselect: {{model: {model}}}, flag_languages: {flag}}}}}
"""


def score_seconds(config_text: str, out, config) -> tuple[float, float, float]:
    """(seconds inside the score stage, peak RSS of the worker process tree's largest process in MB, the
    score tasks' own peak RSS from the run log) of a release (`config_text` writes to `out`)."""
    subprocess.run(["rm", "-rf", str(out)], check=True)
    config.write_text(config_text)
    result = measure([str(ROOT / ".venv/bin/gristmill"), "run", str(config), "--quiet"])
    log = json.loads(next((out / "_logs").glob("run-*.json")).read_text())
    scored = [r for r in log["reports"] if "score" in r["stages"]]
    return (sum(r["stages"]["score"]["seconds"] for r in scored), result["peak_rss_worker_mb"],
            max(r["peak_rss_mb"] for r in scored))


def run_stage(corpus, flag: str) -> tuple[float, float]:
    """(seconds inside the score stage, peak worker RSS in MB) of a one-worker release."""
    out = WORK / f"score-out-{flag}"
    seconds, rss, _ = score_seconds(CONFIG.format(out=out, corpus=corpus, model=MODEL, flag=flag), out,
                                    WORK / f"score-{flag}.yaml")
    return seconds, rss


def main() -> None:
    WORK.mkdir(exist_ok=True)
    src = WORK / "dedup-src"  # extracted text of the crawl sample, made by dedup_bench.py
    if not (src / "manifest.json").exists():
        sys.exit("run dedup_bench.py first (it extracts the crawl sample into bench/_work/dedup-src)")
    docs = stats.connect(str(src)).execute("SELECT id, text FROM docs_extract ORDER BY id").fetchall()
    texts = [t for _ in range(10) for _, t in docs]
    corpus = WORK / "score-corpus.parquet"
    pq.write_table(pa.table({"id": [f"{k}/{i}" for k in range(10) for i, _ in docs], "text": texts}), corpus)
    runs = {flag: run_stage(corpus, flag) for flag in ("true", "false")}
    model = fasttext_model.load(str(MODEL))
    began = time.perf_counter()
    model.predict_batch(texts, k=1)
    raw_s = time.perf_counter() - began
    mb = sum(len(t.encode()) for t in texts) / 1e6
    lm = ByteNgramLM.train([t for _, t in docs[:300]], 3)
    began = time.perf_counter()
    for t in texts[:2000]:
        lm.bits(t)
    lm_s = time.perf_counter() - began
    lm_mb = sum(len(t.encode()) for t in texts[:2000]) / 1e6
    print(f"{len(texts)} documents, {mb:.1f} MB")
    for flag, (stage_s, rss) in runs.items():
        print(f"score stage, flag_languages {flag}: {len(texts) / stage_s:,.0f} docs/s (1 worker; reading, "
              f"scoring, writing Parquet), peak RSS {rss:.0f} MB, ratio stage / raw {raw_s / stage_s:.2f}")
    print(f"raw fastText predict_batch: {len(texts) / raw_s:,.0f} docs/s")
    print(f"n-gram (order 3) loss backend: {lm_mb / lm_s:.1f} MB/s, {2000 / lm_s:,.0f} docs/s")


if __name__ == "__main__":
    main()
