"""decontaminate: benchmark n-grams found in documents (whole, in part, normalised), rejected or cut out,
recorded per hit; bad benchmark files are config errors before any work; resumable, same bytes."""

import json
import random

import numpy as np
import pytest

from pipelines import stats
from pipelines.config import ConfigError, load_config
from pipelines.decontaminate.ngrams import Index, normalise, word_hashes, words
from pipelines.release import run_release
from tests.conftest import ROOT

PYTHON_DOCS = ROOT / "tests/data/validation/python-docs.jsonl"
ITEMS = [
    {"id": "q0", "question": "A train leaves the station at nine in the morning and travels at sixty miles per hour "
                             "toward a city that lies one hundred and eighty miles away; at what time does it "
                             "arrive if it never stops?", "answer": "It arrives at noon, three hours later."},
    {"id": "q1", "question": "Which gas do green plants take in from the air during photosynthesis, and which gas "
                             "do they give off as a by-product of splitting water molecules?",
     "answer": ["carbon dioxide", "oxygen"]},
    {"id": "q2", "question": "What is seven times six?", "answer": "42"},  # 6 words: matched whole
]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _item_text(item) -> str:
    answer = item["answer"] if isinstance(item["answer"], str) else " ".join(item["answer"])
    return f"{item['question']} {answer}"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Python docs pages, some with a benchmark item planted whole, in part (>= 13 words, punctuation and
    case changed), or the short item; the truth is which."""
    tmp = tmp_path_factory.mktemp("decont")
    pages = [json.loads(line)["text"] for line in PYTHON_DOCS.read_text().splitlines()]
    rng = random.Random(0)
    docs, truth = [], {}
    for i, text in enumerate(pages * 2):
        kind = ["clean", "clean", "whole", "part", "short"][i % 5]
        cut = text.split(" ")
        at = rng.randrange(len(cut))
        if kind == "whole":
            planted = _item_text(ITEMS[i % 2])
        elif kind == "part":
            w = _item_text(ITEMS[i % 2]).split()
            planted = " ".join(w[5:19]).upper() + " !!"  # 14 words, shouted
        elif kind == "short":
            planted = "so: what is SEVEN times six? 42."
        if kind != "clean":
            cut.insert(at, planted)
        docs.append({"id": f"d{i:03d}", "text": " ".join(cut)})
        truth[f"d{i:03d}"] = kind
    _jsonl(tmp / "docs.jsonl", docs)
    _jsonl(tmp / "bench.jsonl", ITEMS)
    return tmp, truth


def _release(tmp, name, stage: str, workers: int = 1):
    config = tmp / f"{name}.yaml"
    config.write_text(f"""
release: {name}
output: {tmp / name}
runner: {{kind: local, workers: {workers}}}
sources: [{{name: docs, paths: ["{tmp / 'docs.jsonl'}"], format: jsonl}}]
stages:
  decontaminate: {stage}
""")
    return load_config(str(config))


def _quiz(tmp, options: str = "") -> str:
    """The stage's block with the quiz benchmark, after `options` ("key: value, ")."""
    return (f'{{{options}benchmarks: [{{name: quiz, paths: ["{tmp / "bench.jsonl"}"], format: jsonl, '
            f'fields: [question, answer]}}]}}')


def test_words_and_hashes_do_not_depend_on_the_batch():
    assert words("Don't STOP-me now: it's 9.5%!") == ["dont", "stopme", "now", "its", "95"]
    texts = [normalise(t) for t in ["one two three", "", "four five", "ünïcode wörds ok"]]
    together, text_of = word_hashes(texts)
    alone = np.concatenate([word_hashes([t])[0] for t in texts])
    assert np.array_equal(together, alone) and text_of.tolist() == [0, 0, 0, 2, 2, 3, 3, 3]
    assert len(set(together.tolist())) == len(together)


def test_index_matches_runs_inside_one_text_only():
    index = Index.build([["alpha beta gamma delta"]], 3)
    found = index.matches(["alpha beta", "gamma delta", "x beta gamma delta"])
    assert found.text.tolist() == [2] and found.start.tolist() == [1]  # never across texts 0 and 1


def test_planted_items_are_rejected_and_recorded(corpus):
    tmp, truth = corpus
    cfg = _release(tmp, "reject", _quiz(tmp))
    run_release(cfg, progress=False)
    con = stats.connect(cfg.output)
    rejected = dict(con.execute("SELECT id, detail FROM rejects WHERE reason = 'decontaminate.quiz'").fetchall())
    assert {i for i, k in truth.items() if k != "clean"} == set(rejected)  # recall 1, no false positive
    short = next(i for i, k in truth.items() if k == "short")
    assert rejected[short] == "1 n-grams matched; item q2"
    rows = con.execute("SELECT id, item, action FROM contamination").fetchall()
    assert len(rows) == len(rejected) and {r[2] for r in rows} == {"rejected"}
    hits = dict(con.execute("SELECT metric, sum(value) FROM stats WHERE stage = 'decontaminate' GROUP BY 1").fetchall())
    assert hits["docs_hit.quiz"] == len(rejected) and hits["ngrams_matched.quiz"] > len(rejected)
    assert stats.funnel(cfg.output)["adds_up"]
    from pipelines.report import render

    assert "<h2>Decontamination</h2>" in render(cfg.output)


def test_min_matches_counts_ngrams_of_one_item(corpus):
    tmp, truth = corpus
    cfg = _release(tmp, "min2", _quiz(tmp, "min_matches: 3, "))
    run_release(cfg, progress=False)
    rejected = {r[0] for r in stats.connect(cfg.output).execute("SELECT id FROM rejects").fetchall()}
    # a 14-word part shares 2 13-grams: not enough; whole items and the short item (matched whole) are
    assert rejected == {i for i, k in truth.items() if k in ("whole", "short")}


def test_remove_spans_cuts_the_match_with_a_margin(corpus):
    tmp, truth = corpus
    cfg = _release(tmp, "spans", _quiz(tmp, "mode: remove_spans, min_doc_chars: 100, "))
    run_release(cfg, progress=False)
    con = stats.connect(cfg.output)
    kept = {i: (t, n) for i, t, n in con.execute("SELECT id, text, decontaminate_chars_removed "
                                                  "FROM docs_decontaminate").fetchall()}
    originals = {json.loads(line)["id"]: json.loads(line)["text"]
                 for line in (tmp / "docs.jsonl").read_text().splitlines()}
    for doc_id, kind in truth.items():
        if doc_id not in kept:
            continue
        text, removed = kept[doc_id]
        assert removed == len(originals[doc_id]) - len(text)
        assert (removed == 0) == (kind == "clean")
        assert "seven times six" not in text.lower() and "photosynthesis" not in text
    assert any(kind != "clean" for doc_id, kind in truth.items() if doc_id in kept)
    short_pages = con.execute("SELECT count(*) FROM rejects WHERE detail LIKE '%fewer than min_doc_chars'").fetchone()
    assert short_pages[0] == len(truth) - len(kept)


def test_same_bytes_with_two_workers_and_a_rerun_skips_every_task(corpus):
    tmp, _ = corpus
    copy = tmp / "docs-copy.jsonl"
    copy.write_text((tmp / "docs.jsonl").read_text().replace('"id": "d', '"id": "c'))
    stage = _quiz(tmp)
    runs = []
    for workers in (1, 2):
        cfg = _release(tmp, f"w{workers}", stage, workers)
        source = cfg.sources[0].model_copy(update={"paths": [str(tmp / "docs.jsonl"), str(copy)]})
        runs.append(cfg.model_copy(update={"sources": [source]}))
        run_release(runs[-1], progress=False)
    for part in ("part-00000", "part-00001"):
        for folder in ("", "_contamination/", "_rejects/"):
            name = f"decontaminate/{folder}{part}.parquet"
            assert (tmp / "w1" / name).read_bytes() == (tmp / "w2" / name).read_bytes(), name
    log = run_release(runs[0], progress=False)
    assert log["skipped"] == log["tasks"] == 3  # the index and the two parts


@pytest.mark.parametrize("benchmark, expected", [
    ('{name: q, paths: ["BENCH"], format: jsonl, fields: [question, nope]}', "field 'nope' is missing"),
    ('{name: q, paths: ["BENCH"], format: jsonl, fields: [nope]}', "MissingField"),
    ('{name: q, paths: ["CORRUPT"], format: jsonl, fields: [question]}', "InvalidJson"),
    ('{name: q, paths: ["EMPTY"], format: jsonl}', "no item with words"),
    ('{name: q, paths: ["MISSING"], format: jsonl}', "no file matches"),
])
def test_bad_benchmarks_fail_before_any_work(corpus, benchmark, expected):
    tmp, _ = corpus
    (tmp / "corrupt.jsonl").write_text(json.dumps(ITEMS[0]) + "\n{not json\n")
    (tmp / "empty.jsonl").write_text(json.dumps({"text": " ... !!! "}) + "\n")
    paths = {"BENCH": tmp / "bench.jsonl", "CORRUPT": tmp / "corrupt.jsonl", "EMPTY": tmp / "empty.jsonl",
             "MISSING": tmp / "nowhere-*.jsonl"}
    for key, value in paths.items():
        benchmark = benchmark.replace(key, str(value))
    with pytest.raises(ConfigError, match=r"stages\.decontaminate\.benchmarks\[0\] \(q\)") as info:
        run_release(_release(tmp, "bad", f"{{benchmarks: [{benchmark}]}}"), progress=False)
    assert expected in str(info.value)
    assert not (tmp / "bad").exists()


def test_an_empty_benchmark_list_is_a_config_error(corpus):
    tmp, _ = corpus
    with pytest.raises(ConfigError, match=r"stages\.decontaminate\.benchmarks"):
        _release(tmp, "none", "{benchmarks: []}")


def test_a_short_item_counts_whole_even_alone_in_its_batch():
    """With min_matches 3, a whole short item still contaminates when no n-gram of a long item is found
    in the same batch."""
    from pipelines.decontaminate.tasks import _hits

    index = Index.build([["what is seven times six 42"]], 13)
    found = index.matches([normalise("So: what is SEVEN times six? 42."), "nothing here"])
    assert found.length.tolist() == [6]
    assert _hits(found, np.flatnonzero(found.text == 0), 3, 13) == {0: (1, 0)}
    assert _hits(found, np.flatnonzero(found.text == 1), 3, 13) == {}
