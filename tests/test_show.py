"""`gristmill show`: seeded samples of kept documents, rejects by reason (with the text the rejecting stage
received: the previous stage's Parquet, or the source record by file and offset), by cluster and by id;
escaped text; JSON lines; exit code 2 for bad arguments. One small release (~3 s): a WARC and a JSONL source
through extract, filter, dedup and a CLIMB mixture (upsampled copies)."""

import gzip
import hashlib
import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import stats
from pipelines.cli import main
from pipelines.config import load_config
from pipelines.readers import SourceConfig, read_shard
from pipelines.release import run_release
from pipelines.show import ShowError, as_json, as_text, escape, show, source_record
from tests.warc_factory import PROSE, html_page, request, response

ANSI = "Red \x1b[31malert\x1b[0m and a bell \x07 and \x1b]0;title\x07 and a CSI \x9b2J here."


WORDS = ("quiet", "northern", "early", "heavy", "local", "bright", "narrow", "second", "wooden", "patient",
         "careful", "open", "distant", "small", "older", "rapid", "common", "green", "steady", "useful")


def _prose(i: int) -> list[str]:
    """Six sentences, with words of their own: no two documents are near duplicates."""
    rng = random.Random(i)
    return [" ".join(w for k, word in enumerate(sentence.split()) for w in ((word, rng.choice(WORDS)) if k % 2
                     else (word,))) for sentence in PROSE]


def _jsonl_lines() -> list[dict]:
    lines = [{"id": f"j{i}", "url": f"https://news.example/{i}", "text": "\n".join(_prose(i))} for i in range(10)]
    lines.append({"id": "j-curly", "url": "https://code.example/1",
                  "text": "\n".join(_prose(20)) + "\nint main() { return 0; }"})
    lines.append({"id": "j0-copy", "url": "https://mirror.example/0", "text": lines[0]["text"]})  # a duplicate
    lines.append({"id": "j-ansi", "url": "https://evil.example/\x1b[2J", "text": ANSI + "\n" + "\n".join(_prose(30))})
    return lines


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("show")
    (tmp / "in").mkdir()
    members = [request("https://web.example/0")]
    for i in range(8):
        members.append(response(f"https://web.example/{i}", html_page(_prose(100 + i)).encode()))
    members.append(response("https://web.example/missing", b"<html><body>Not here</body></html>", status=404,
                            reason="Not Found"))
    members.append(response("https://web.example/code", html_page(_prose(200) + ["var x = { a: 1 };"]).encode()))
    (tmp / "in" / "web.warc.gz").write_bytes(b"".join(members))
    (tmp / "in" / "docs.jsonl").write_text("\n".join(json.dumps(r) for r in _jsonl_lines()) + "\n")
    config = tmp / "release.yaml"
    config.write_text(f"""
release: show
output: {tmp / "out"}
runner: {{kind: local, workers: 1}}
sources:
  - {{name: web, paths: ["{tmp}/in/*.warc.gz"], format: warc}}
  - {{name: notes, paths: ["{tmp}/in/*.jsonl"], format: jsonl}}
stages:
  extract: {{}}
  filter: {{language: {{enabled: false}}, c4: {{filter_no_terminal_punct: false}}}}
  dedup: {{exact: true}}
  mixture: {{budget_tokens: 100000, strata: [cluster], climb: {{clusters: 2}}}}
""")
    cfg = load_config(str(config))
    run_release(cfg, progress=False)
    return cfg


def _out(cfg) -> str:
    return cfg.output


def test_kept_sample_is_seeded_and_stable(release):
    out = _out(release)
    con = stats.connect(out)
    kept = [r[0] for r in con.execute("SELECT DISTINCT id FROM docs_mixture").fetchall()]
    assert len(kept) >= 10
    for seed in (0, 1):
        got = [d.id for d in show(out, n=4, seed=seed)]
        expected = sorted(kept, key=lambda i: (hashlib.md5(f"{seed}:{i}".encode()).hexdigest(), i))[:4]
        assert got == expected  # the last stage with documents, in md5(seed:id) order
        assert [d.id for d in show(out, n=4, seed=seed)] == got  # the same every run
        assert all(d.status == "kept" and d.stage == "mixture" for d in show(out, n=4, seed=seed))
    assert [d.id for d in show(out, n=4, seed=0)] != [d.id for d in show(out, n=4, seed=1)]
    by_stage = show(out, stage="extract", n=100)
    extract = dict(con.execute("SELECT id, text FROM docs_extract").fetchall())
    assert {d.id: d.text for d in by_stage} == extract


def test_rejects_show_what_the_stage_received(release):
    out = _out(release)
    con = stats.connect(out)
    rejected = {r[0]: r[1:] for r in con.execute("SELECT id, stage, reason, detail FROM rejects").fetchall()}
    extract = dict(con.execute("SELECT id, text FROM docs_extract").fetchall())
    curly = show(out, reason="c4.curly_bracket", n=50)
    assert {d.id for d in curly} == {i for i, (_, reason, _) in rejected.items() if reason == "c4.curly_bracket"}
    assert {d.id for d in curly} >= {"j-curly"}
    assert any(d.source == "web" for d in curly)
    for d in curly:
        assert (d.stage, d.reason, d.status) == ("filter", "c4.curly_bracket", "rejected")
        if d.source == "web":  # filter read it from extract's Parquet of that part
            assert d.text == extract[d.id] and d.text_from.startswith("extract/part-")
        else:  # a JSONL record goes straight to filter: the source line, read by its line number
            line = _jsonl_lines()[d.input_offset]
            assert d.text == line["text"] and d.id == line["id"] and d.text_from == "source record (jsonl)"
    # prefixes: the reason's block, the stage, stage.reason
    assert {d.id for d in show(out, reason="c4", n=50)} >= {d.id for d in curly}
    assert {d.id for d in show(out, reason="filter.c4.curly_bracket", n=50)} == {d.id for d in curly}
    assert {d.id for d in show(out, stage="filter", reason="filter", n=500)} == {
        i for i, (stage, _, _) in rejected.items() if stage == "filter"}


def test_extract_reject_is_the_source_record_read_at_its_offset(release):
    out = _out(release)
    [d] = show(out, reason="http_status")
    assert (d.stage, d.detail, d.url) == ("extract", "404", "https://web.example/missing")
    assert d.text == "<html><body>Not here</body></html>"  # the HTTP payload extract received
    assert d.text_from == "source record (warc: the HTTP payload)"


def test_source_record_seeks(release, tmp_path):
    src = SourceConfig(name="web", paths=["x"], format="warc")
    path = str(Path(release.sources[0].paths[0]).parent / "web.warc.gz")
    docs = list(read_shard(src, path, []))
    for doc in docs:
        assert source_record(src, path, doc["input_offset"])["id"] == doc["id"]
    assert source_record(src, path, 1) is None  # not a record start
    table = pa.table({"id": [f"r{i}" for i in range(7)], "text": [f"text {i}" for i in range(7)]})
    pq.write_table(table, tmp_path / "s.parquet", row_group_size=2)
    src = SourceConfig(name="p", paths=["x"], format="parquet")
    assert source_record(src, str(tmp_path / "s.parquet"), 5)["text"] == "text 5"


def test_by_id_and_duplicates(release):
    out = _out(release)
    con = stats.connect(out)
    kept_id = con.execute("SELECT id FROM docs_mixture ORDER BY id LIMIT 1").fetchone()[0]
    assert show(out, doc_id=kept_id)[0].status == "kept"
    [d] = show(out, doc_id="j-curly")
    assert (d.status, d.reason, d.text) == ("rejected", "c4.curly_bracket", _jsonl_lines()[10]["text"])
    assert d.input_offset == 10 and d.id == _jsonl_lines()[10]["id"]
    dup = con.execute("SELECT id, duplicate_of FROM rejects WHERE stage = 'dedup'").fetchall()
    assert dup == [("j0-copy", "j0")]
    for doc_id, of in dup:  # dedup read the filter's output
        [d] = show(out, doc_id=doc_id)
        text = con.execute("SELECT text FROM docs_filter WHERE id = ?", [doc_id]).fetchone()[0]
        assert (d.stage, d.duplicate_of, d.text) == ("dedup", of, text)


def test_cluster(release):
    out = _out(release)
    con = stats.connect(out)
    clusters = dict(con.execute("SELECT cluster, list(DISTINCT id) FROM docs_mixture GROUP BY 1").fetchall())
    assert len(clusters) >= 2
    for cluster, ids in clusters.items():  # each document once, upsampled copies or not
        shown = show(out, cluster=cluster, n=100)
        assert sorted(d.id for d in shown) == sorted(ids)
        assert all(d.stage == "mixture" and d.status == "kept" for d in shown)
    assert len(show(out, cluster="c000", n=2)) == 2


def test_text_is_escaped(release):
    out = _out(release)
    [d] = show(out, doc_id="j-ansi")
    assert d.text.startswith(ANSI)  # the document as it is ...
    shown = as_text(d, 1, 1)
    for char in ("\x1b", "\x07", "\x9b"):  # ... but nothing of it can act on the terminal
        assert char not in shown
    assert "Red \\x1b[31malert\\x1b[0m and a bell \\x07" in shown and "\\x9b2J" in shown
    assert "url:    https://evil.example/\\x1b[2J" in shown
    assert escape("a\tb\nc\r\u202ed\ud800") == "a\tb\nc\\r\\u202ed\\ud800"
    assert escape("a\tb\nc", one_line=True) == "a\\tb\\nc"
    line = as_json(d)
    assert line.isascii() and json.loads(line)["text"].startswith(ANSI)


def test_long_text_is_clipped(release):
    out = _out(release)
    [d] = show(out, stage="extract", n=1)
    d.text = "A" * 1000 + "B" * 3000 + "C" * 1000
    shown = as_text(d, 1, 1, chars=600)
    assert "A" * 600 + "\n… [3800 characters omitted] …\n" + "C" * 600 in shown and "B" not in shown
    record = json.loads(as_json(d, chars=600))
    assert (record["chars"], record["omitted"]) == (5000, 3800)
    assert json.loads(as_json(d, chars=None))["text"] == d.text


def test_cli(release, capsys):
    out = _out(release)
    assert main(["show", out, "--reason", "c4.curly_bracket", "--json", "-n", "50", "--full"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {r["id"] for r in lines} == {d.id for d in show(out, reason="c4.curly_bracket", n=50)}
    assert all(r["omitted"] == 0 and r["reason"] == "c4.curly_bracket" for r in lines)
    assert main(["show", out, "-n", "2", "--seed", "3"]) == 0
    assert capsys.readouterr().out.count("=== [") == 2


@pytest.mark.parametrize("args, message", [
    (["--stage", "nope"], "unknown stage 'nope'; this release has: extract, filter, dedup, mixture"),
    (["--stage", "nope", "--reason", "x"], "unknown stage"),
    (["--reason", "nope"], "no rejects with reason 'nope'; the reasons are:\n  dedup  duplicate  (1)\n  extract"),
    (["--id", "nope"], "id 'nope' not found"),
    (["--cluster", "nope"], "no documents of mixture in cluster 'nope'; the clusters are: c000 ("),
    (["--cluster", "c000", "--stage", "filter"], "the documents of stage 'filter' have no `cluster` column"),
    (["-n", "0"], "-n must be at least 1"),
])
def test_errors_exit_2(release, capsys, args, message):
    assert main(["show", _out(release), *args]) == 2
    assert message in capsys.readouterr().err


def test_not_a_release(tmp_path, capsys):
    assert main(["show", str(tmp_path)]) == 2
    assert "not a release" in capsys.readouterr().err
    with pytest.raises(ShowError):
        show(str(tmp_path / "missing"))


def test_gzip_source_is_read_to_the_line(tmp_path):
    path = tmp_path / "d.jsonl.gz"
    path.write_bytes(gzip.compress(b"".join(json.dumps({"text": f"t{i}"}).encode() + b"\n" for i in range(5))))
    src = SourceConfig(name="g", paths=["x"], format="jsonl")
    assert source_record(src, str(path), 3)["text"] == "t3"
    assert source_record(src, str(path), 9) is None
