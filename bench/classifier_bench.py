"""Benchmark of the classifiers users bring to the score stage (`stages.score.classifiers`), each against
the raw library in the same run, on the extracted text of the crawl sample.

fasttext  a classifier made by `pipelines.classifier_train` (Python docs against the crawl), DCLM's recipe
          with a 200,000-row bucket: docs/s per core of the score stage (a one-worker release whose only
          stage is score; the seconds inside the stage, from the run log) against raw
          `fasttext.load_model(path).predict(texts, k=1)` on the same ~10k texts; peak RSS of the worker.
hf        a 4-layer BERT (hidden 256, 4 heads, 512 positions, random weights, regression head) with a
          WordPiece tokenizer (8,000) trained here on the crawl: tokens/s (non-padding tokens after
          truncation to 512) of `scorers.classifiers.score` (length-sorted batches of 32) against a plain
          transformers loop over the same texts in their order (batches of 32, padded to the longest),
          on CPU; the largest difference between their scores.
hosts     (not run by default; `--parts hosts`) held-out metrics of `gristmill classifier train` with one
          host's pages of the crawl as positives and the other hosts' as the pool, for the host with the
          most pages and a smaller one, with DCLM's recipe and with the small-data settings of the tests.

Nothing is downloaded. Runs from the repo root as `.venv/bin/python bench/classifier_bench.py`;
`--parts fasttext hf hosts` picks the parts. Results also go to `bench/_work/classifier_bench.json`.
"""

import argparse
import json
import math
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.parquet as pq
from extract_filter import ROOT, WORK
from score_bench import score_seconds

sys.path.insert(0, str(ROOT))
from pipelines.readers import SourceConfig, read_shard  # noqa: E402
from pipelines.stages import extract  # noqa: E402

CRAWL = str(ROOT.parent / "shared/data/crawl-sample/*.warc.gz")
VALIDATION = ROOT / "tests/data/validation/python-docs.jsonl"
OUT = WORK / "classifier-bench"
STAGE_CONFIG = """release: classifier-bench
output: {out}
runner: {{kind: local, workers: 1}}
sources: [{{name: docs, paths: ["{corpus}"], format: parquet}}]
stages:
  score:
    classifiers: [{{name: target, kind: fasttext, path: "{model}"}}]
    flag_languages: {flag}
"""
DCLM = {"lr": 0.1, "dim": 100, "epoch": 5, "word_ngrams": 2}
SMALL = {"lr": 1.0, "dim": 20, "epoch": 50, "word_ngrams": 2}  # what tests/test_classifiers.py trains with


def crawl_docs() -> list[dict]:
    """id, url and extracted text of every crawl-sample page with text, in file order (as iter_texts)."""
    import glob

    source = SourceConfig(name="crawl", paths=[CRAWL], format="warc")
    docs = []
    for path in sorted(glob.glob(CRAWL)):
        for d in extract.run(list(read_shard(source, path, [])), extract.ExtractConfig()).docs:
            if d.get("text") and d["text"].strip():
                docs.append({"id": d["id"], "url": d["url"], "text": d["text"]})
    return docs


# -- fastText ----------------------------------------------------------------------------------------------

def train_target() -> Path:
    """Python docs (positives) against the crawl (negatives, as many as there are crawl pages), DCLM's recipe."""
    from pipelines.classifier_train import ClassifierSpec, RecipeSpec, train

    model = OUT / "target.bin"
    spec = ClassifierSpec(
        positives=[SourceConfig(name="python-docs", paths=[str(VALIDATION)], format="jsonl")],
        negatives=[SourceConfig(name="crawl", paths=[CRAWL], format="warc")],
        negatives_per_positive=100, fasttext=RecipeSpec(**DCLM, bucket=200_000), output=str(model))
    info = train(spec)
    d, h = info["documents"], info["held_out"]
    print(f"trained {model.relative_to(ROOT)}: {d['positives']} positives, {d['negatives']} negatives; held-out "
          f"ROC AUC {h['roc_auc']:.3f}, {model.stat().st_size / 1e6:.0f} MB")
    return model


def run_stage(corpus: Path, model: Path, flag: str) -> tuple[float, float, float]:
    """(seconds inside the score stage, peak RSS of the worker process tree's largest process in MB, the
    score task's own peak RSS from the run log) of a one-worker release whose only stage is score."""
    out = OUT / f"stage-{flag}"
    return score_seconds(STAGE_CONFIG.format(out=out, corpus=corpus, model=model, flag=flag), out,
                         OUT / f"stage-{flag}.yaml")


def bench_fasttext(docs: list[dict], target_docs: int, repeat: int) -> dict:
    import fasttext

    model = train_target()
    copies = math.ceil(target_docs / len(docs))
    texts = [d["text"] for _ in range(copies) for d in docs]
    corpus = OUT / "corpus.parquet"
    pq.write_table(pa.table({"id": [f"{k}/{d['id']}" for k in range(copies) for d in docs], "text": texts,
                             "language": ["en"] * len(texts)}), corpus)
    mb = sum(len(t.encode()) for t in texts) / 1e6
    fasttext.FastText.eprint = lambda *args, **kwargs: None
    raw = fasttext.load_model(str(model))

    def raw_seconds() -> float:
        began = time.perf_counter()
        raw.predict([t.replace("\n", " ") for t in texts], k=1)
        return time.perf_counter() - began

    runs, raw_s = {"false": (math.inf,), "true": (math.inf,)}, math.inf
    for _ in range(repeat):  # keep the fastest of each
        raw_s = min(raw_s, raw_seconds())
        for flag in runs:
            runs[flag] = min(runs[flag], run_stage(corpus, model, flag))
    print(f"\n(a) fastText: {len(texts):,} documents ({copies} copies of {len(docs):,} pages), {mb:.1f} MB, 1 worker")
    print(f"raw fasttext predict(k=1): {raw_s:.2f} s, {len(texts) / raw_s:,.0f} docs/s per core")
    result = {"documents": len(texts), "mb": round(mb, 1), "raw_seconds": round(raw_s, 2),
              "raw_docs_per_s": round(len(texts) / raw_s)}
    for flag, (stage_s, rss, task_rss) in runs.items():
        ratio = raw_s / stage_s
        print(f"score stage, flag_languages {flag}: {stage_s:.2f} s, {len(texts) / stage_s:,.0f} docs/s per core, "
              f"ratio stage / raw {ratio:.2f} (target >= 0.9: {'PASS' if ratio >= 0.9 else 'MISS'}), peak RSS "
              f"{rss:.0f} MB (score task {task_rss:.0f} MB)")
        result[f"flag_languages_{flag}"] = {"seconds": round(stage_s, 2), "docs_per_s": round(len(texts) / stage_s),
                                            "ratio": round(ratio, 3), "peak_rss_mb": round(rss),
                                            "task_peak_rss_mb": round(task_rss)}
    return result


# -- Hugging Face ------------------------------------------------------------------------------------------

def build_bert(texts: list[str], folder: Path) -> str:
    """A 4-layer BERT regression classifier, random weights, WordPiece (8,000) trained on `texts`."""
    import torch
    import transformers
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Writing model shards"
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer()
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator([t[:20_000] for t in texts], trainers.WordPieceTrainer(  # the heads: enough, faster
        vocab_size=8000, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"], show_progress=False))
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[
        ("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                                cls_token="[CLS]", sep_token="[SEP]")
    config = transformers.BertConfig(vocab_size=len(fast), hidden_size=256, num_hidden_layers=4,
                                     num_attention_heads=4, intermediate_size=1024, max_position_embeddings=512,
                                     num_labels=1)
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config)
    fast.save_pretrained(folder)
    model.save_pretrained(folder)
    return str(folder)


def plain_loop(path: str, batch_size: int, max_tokens: int):
    """A plain transformers loop: the texts in their order, each batch padded to its longest."""
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(path, local_files_only=True).eval()

    def run(batch_texts):
        out, tokens = [], 0
        with torch.inference_mode():
            for at in range(0, len(batch_texts), batch_size):
                enc = tokenizer(batch_texts[at:at + batch_size], truncation=True, max_length=max_tokens,
                                padding=True, return_tensors="pt")
                tokens += int(enc["attention_mask"].sum())
                out.append(model(**enc).logits[:, 0].numpy())
        return np.concatenate(out), tokens

    return run


def bench_hf(docs: list[dict], n: int, batch_size: int, max_tokens: int) -> dict:
    """Both run on the same windows of BATCH_DOCS texts (what the stage hands the classifier at a time; a
    multiple of the batch size, so the plain loop's batches are those of one pass over all the texts), taking
    turns at going first, so that a noisy machine slows both alike."""
    import numpy as np
    import torch

    from pipelines.shard_task import BATCH_DOCS
    from scorers import classifiers

    texts = [d["text"] for d in docs[:n]]
    began = time.perf_counter()
    path = build_bert([d["text"] for d in docs], OUT / "bert")
    build_s = time.perf_counter() - began
    cfg = classifiers.ClassifierConfig(name="edu", kind="hf", path=path, head="regression", max_tokens=max_tokens,
                                       batch_size=batch_size, device="cpu")
    tokenizer = classifiers.load(cfg).tokenizer
    plain = plain_loop(path, batch_size, max_tokens)
    classifiers.score(cfg, texts[:batch_size])  # warm both up on one batch
    plain(texts[:batch_size])
    began = time.perf_counter()  # the part both pay in full: the whole texts are tokenized, then cut
    ids = tokenizer(texts, truncation=True, max_length=max_tokens)["input_ids"]
    tokenize_s = time.perf_counter() - began
    ours, theirs, seconds, tokens = [], [], {"score": 0.0, "plain": 0.0}, 0
    for k, at in enumerate(range(0, len(texts), BATCH_DOCS)):
        window = texts[at:at + BATCH_DOCS]
        for name in ("score", "plain") if k % 2 == 0 else ("plain", "score"):
            began = time.perf_counter()
            if name == "score":
                ours.append(classifiers.score(cfg, window))
            else:
                values, counted = plain(window)
                theirs.append(values)
                tokens += counted
            seconds[name] += time.perf_counter() - began
    diff = float(np.abs(np.concatenate(ours) - np.concatenate(theirs)).max())
    ratio = seconds["plain"] / seconds["score"]
    print(f"\n(b) Hugging Face on CPU ({torch.get_num_threads()} torch threads): {len(texts):,} crawl texts in windows "
          f"of {BATCH_DOCS}, {tokens:,} tokens after truncation to {max_tokens}, batch {batch_size}; BERT 4 x 256 "
          f"built in {build_s:.1f} s")
    assert tokens == sum(map(len, ids)), "the two count different tokens"
    print(f"the plain loop tokenizes whole texts: {tokenize_s:.1f} s ({sum(map(len, texts)) / 1e6:.1f} M characters, "
          f"the longest {max(map(len, texts)):,}, then cut: {sum(len(i) == max_tokens for i in ids)} are cut)")
    for name, label in (("score", "scorers.classifiers.score"), ("plain", "plain transformers loop")):
        print(f"{label + ':':<27}{seconds[name]:.1f} s, {tokens / seconds[name]:,.0f} tokens/s")
    print(f"ratio score / plain {ratio:.2f} (target >= 1.0: {'PASS' if ratio >= 1.0 else 'MISS'}); max |difference| "
          f"{diff:.2e} ({'PASS' if diff <= 1e-4 else 'MISS'} <= 1e-4)")
    return {"texts": len(texts), "tokens": tokens, "tokenize_seconds": round(tokenize_s, 2),
            "score_seconds": round(seconds["score"], 2), "plain_seconds": round(seconds["plain"], 2),
            "score_tokens_per_s": round(tokens / seconds["score"]),
            "plain_tokens_per_s": round(tokens / seconds["plain"]),
            "ratio": round(ratio, 3), "max_difference": diff}


# -- one host against the rest -----------------------------------------------------------------------------

def host(url: str) -> str:
    return urlsplit(url).hostname or "(none)"


def write_jsonl(path: Path, docs: list[dict]) -> None:
    with open(path, "w") as fh:
        for d in docs:
            fh.write(json.dumps({"id": d["id"], "text": d["text"]}) + "\n")


def train_host(docs: list[dict], name: str, recipes: dict[str, dict]) -> dict:
    """`gristmill classifier train` with the pages of host `name` as positives and the others as the pool."""
    folder = OUT / "hosts" / name
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "positives.jsonl", [d for d in docs if host(d["url"]) == name])
    write_jsonl(folder / "negatives.jsonl", [d for d in docs if host(d["url"]) != name])
    results = {}
    for recipe, settings in recipes.items():
        spec = folder / f"{recipe}.yaml"
        spec.write_text(f"""positives: [{{name: host, paths: ["{folder / 'positives.jsonl'}"], format: jsonl}}]
negatives: [{{name: pool, paths: ["{folder / 'negatives.jsonl'}"], format: jsonl}}]
negatives_per_positive: 1
held_out: 0.2
fasttext: {json.dumps(settings)}
seed: 0
output: {folder / recipe}.bin
""")
        began = time.perf_counter()
        done = subprocess.run([str(ROOT / ".venv/bin/gristmill"), "classifier", "train", str(spec)],
                              capture_output=True, text=True, cwd=ROOT)
        if done.returncode != 0:
            sys.exit(f"classifier train {spec} failed: {done.stderr}")
        info = json.loads(Path(f"{folder / recipe}.bin.json").read_text())
        results[recipe] = {"settings": settings, "documents": info["documents"], "held_out": info["held_out"],
                           "seconds": round(time.perf_counter() - began, 1)}
        Path(f"{folder / recipe}.bin").unlink()  # up to 800 MB each
    return results


def bench_hosts(docs: list[dict], bucket: int) -> dict:
    pages = Counter(host(d["url"]) for d in docs)
    top, most = pages.most_common(1)[0]
    smaller = next(h for h, n in pages.most_common() if n <= most / 2)  # the largest host under half the top's
    recipes = {"dclm": {**DCLM, "bucket": bucket}, "small": {**SMALL, "bucket": 20_000}}
    print(f"\n(c) one host against the rest: pages per host {dict(pages.most_common())}")
    print(f"{'host':<20}{'recipe':<8}{'pos':>5}{'neg':>5}{'held pos/neg':>13}{'precision':>10}{'recall':>8}"
          f"{'bal. acc':>9}{'ROC AUC':>9}{'s':>6}")
    results = {}
    for name in (top, smaller):
        results[name] = train_host(docs, name, recipes)
        for recipe, r in results[name].items():
            d, h = r["documents"], r["held_out"]
            print(f"{name:<20}{recipe:<8}{d['positives']:>5}{d['negatives']:>5}{h['positives']:>7}/{h['negatives']:<5}"
                  f"{h['precision']:>10.4f}{h['recall']:>8.4f}{h['balanced_accuracy']:>9.4f}{h['roc_auc']:>9.4f}"
                  f"{r['seconds']:>6.1f}")
    print(f"dclm: {DCLM} bucket {bucket:,}; small: {SMALL} bucket 20,000 (as tests/test_classifiers.py)")
    return {"pages_per_host": dict(pages), "runs": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=["fasttext", "hf", "hosts"], default=["fasttext", "hf"])
    parser.add_argument("--docs", type=int, default=10_000, help="fasttext: documents (copies of the crawl pages)")
    parser.add_argument("--repeat", type=int, default=1, help="fasttext: runs of each; the fastest is kept")
    parser.add_argument("--hf-texts", type=int, default=1000, help="hf: the first N crawl texts")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--bucket", type=int, default=2_000_000, help="hosts: DCLM recipe's bucket")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    docs = crawl_docs()
    print(f"crawl sample: {len(docs):,} pages with text, extracted in {time.perf_counter() - began:.1f} s")
    results = {}
    if "fasttext" in args.parts:
        results["fasttext"] = bench_fasttext(docs, args.docs, args.repeat)
    if "hf" in args.parts:
        results["hf"] = bench_hf(docs, args.hf_texts, args.batch_size, args.max_tokens)
    if "hosts" in args.parts:
        results["hosts"] = bench_hosts(docs, args.bucket)
    print(f"\ntotal {time.perf_counter() - began:.0f} s")
    (WORK / "classifier_bench.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
