"""line_dedup: boilerplate lines (or paragraphs) found in more than max_docs documents are removed from
every text and no other line is; counts add across parts and across releases; same bytes for any
number of workers; clear errors for a bad `against`. Small JSONL releases, run in-process."""

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from pipelines import stats
from pipelines.config import ConfigError, load_config
from pipelines.line_dedup.config import LineDedupConfig
from pipelines.line_dedup.tasks import pieces
from pipelines.release import run_release

COPYRIGHT = "Copyright 2024 Example Corp. All rights reserved."
AT_LIMIT = "Subscribe to our newsletter for weekly updates."  # in exactly max_docs documents: kept
OVER = "Share this article on your favourite social network."  # in max_docs + 1 documents: removed
REPEATED = "This sentence is repeated three times in one page."  # 3 x in 2 documents: 2 documents, kept
WORDS = ("river stone garden window market yellow quiet engine paper violin orbit candle harbor pepper "
         "tunnel silver meadow basket falcon ladder copper blanket summer winter island forest museum "
         "lantern compass thunder pencil rocket mirror velvet cactus anchor saddle marble jungle").split()


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 12))).capitalize() + "."


def corpus(n: int = 200, seed: int = 0) -> list[dict]:
    """n documents of varied lines; 5 % carry COPYRIGHT (one twice), plus the planted lines above,
    a short 'Home' line in half of them, and one document that is boilerplate only."""
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        lines = [sentence(rng) for _ in range(rng.randint(3, 7))]
        if i % 20 == 3:
            lines.insert(rng.randint(0, len(lines)), COPYRIGHT)
        if i == 43:
            lines.append(COPYRIGHT)  # twice in one document: counted once
        if i in (5, 50, 95, 140, 185):
            lines.insert(1, AT_LIMIT)
        if i in (7, 57, 107, 157, 167, 197):
            lines.insert(2, "  " + OVER.replace(" ", "   ") + " ")  # the same line once whitespace is collapsed
        if i in (11, 111):
            lines += [REPEATED] * 3
        if i % 2:
            lines.insert(0, "Home")
        docs.append({"id": f"d{i:03d}", "text": "\n".join(lines) + ("\n" if i % 3 else "")})
    docs.append({"id": "z-boilerplate", "text": f"Home\n{COPYRIGHT}\n"})
    return docs


def write_release(tmp_path: Path, name: str, records: list[dict], block: str, files: int = 2, workers: int = 1,
                  inputs: str = ""):
    folder = tmp_path / (inputs or f"{name}-in")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for f in range(files):
        p = folder / f"{f}.jsonl"
        p.write_text("".join(json.dumps(r) + "\n" for r in records[f::files]))
        paths.append(str(p))
    config = tmp_path / f"{name}.yaml"
    config.write_text(f"""
release: {name}
output: {tmp_path / name}
runner: {{kind: local, workers: {workers}}}
sources:
  - {{name: web, paths: {json.dumps(paths)}, format: jsonl}}
stages:
  line_dedup: {block}
""")
    return str(config)


def kept(out: str) -> dict[str, tuple[str, int]]:
    rows = stats.connect(out).execute("SELECT id, text, line_dedup_chars_removed FROM docs_line_dedup").fetchall()
    return {i: (text, removed) for i, text, removed in rows}


def rejected(out: str) -> dict[str, str]:
    rows = stats.connect(out).execute("SELECT id, reason FROM rejects WHERE stage = 'line_dedup'").fetchall()
    return dict(rows)


def norm(line: str) -> str:
    return " ".join(line.split())


def expected(records: list[dict], max_docs: int, min_unit_chars: int = 10, earlier: Counter | None = None):
    """The texts recomputed here: document frequency of every normalised line, lines above max_docs dropped."""
    df = Counter(n for r in records for n in {norm(line) for line in r["text"].split("\n")})
    df.update(earlier or Counter())
    out = {}
    for r in records:
        lines = r["text"].split("\n")
        keep = [i for i, line in enumerate(lines)
                if len(norm(line)) < min_unit_chars or df[norm(line)] <= max_docs]
        text = "".join(lines[i] + ("\n" if i < len(lines) - 1 else "") for i in keep)
        out[r["id"]] = text
    return out, df


def test_planted_boilerplate_is_removed_everywhere_and_nothing_else(tmp_path):
    records = corpus()
    cfg = load_config(write_release(tmp_path, "r", records, "{max_docs: 5, buckets: 3}"))
    run_release(cfg, progress=False)
    again = run_release(cfg, progress=False)
    assert again["skipped"] == again["tasks"] == 2 + 3 + 2  # map, reduce per bucket, apply: all done
    texts, df = expected(records, 5)
    assert df[COPYRIGHT] == 11 and df[norm(OVER)] == 6 and df[AT_LIMIT] == 5 and df[REPEATED] == 2
    docs, rejects = kept(cfg.output), rejected(cfg.output)
    assert rejects == {"z-boilerplate": "boilerplate_only"}
    assert set(docs) == {r["id"] for r in records} - {"z-boilerplate"}
    for r in records[:-1]:
        text, removed = docs[r["id"]]
        assert text == texts[r["id"]]  # every line found in <= max_docs documents is still there
        assert removed == len(r["text"]) - len(text)
    assert not any(COPYRIGHT in t or "social network" in t for t, _ in docs.values())
    assert sum(AT_LIMIT in t for t, _ in docs.values()) == 5
    assert sum(t.count(REPEATED) for t, _ in docs.values()) == 6
    assert sum("Home\n" in t for t, _ in docs.values()) == 100  # shorter than min_unit_chars
    f = stats.funnel(cfg.output)
    assert f["adds_up"] and f["stages"]["line_dedup"] == {"docs_in": 201, "docs_out": 200, "rejected": 1,
                                                          "errors": 0}
    con = stats.connect(cfg.output)
    metrics = dict(con.execute("SELECT metric, sum(value) FROM stats WHERE stage LIKE 'line_dedup%' "
                               "GROUP BY 1").fetchall())
    assert metrics["units_removed"] == 11 + 1 + 6 and metrics["docs_changed"] == 17
    left = sum(len(t) for t, _ in docs.values()) + len("Home\n")  # kept texts, and what the reject had left
    assert metrics["chars_removed"] == sum(len(r["text"]) for r in records) - left
    assert metrics["frequent_units"] == 2


def test_same_bytes_for_one_and_two_workers(tmp_path):
    records = corpus(60, seed=1)
    outs = []
    for workers in (1, 2):
        cfg = load_config(write_release(tmp_path, f"w{workers}", records, "{max_docs: 2, buckets: 2}", files=3,
                                        workers=workers, inputs="in"))
        run_release(cfg, progress=False)
        outs.append(Path(cfg.output) / "line_dedup")
    files = sorted(p.relative_to(outs[0]) for p in outs[0].rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(outs[1]) for p in outs[1].rglob("*") if p.is_file())
    assert any(str(f).startswith("_frequent") for f in files)
    for f in files:
        assert (outs[0] / f).read_bytes() == (outs[1] / f).read_bytes(), f


def test_against_an_earlier_release_adds_its_counts(tmp_path):
    shared = "Read the full terms of service before ordering anything."
    rng = random.Random(2)
    first = [{"id": f"a{i}", "text": f"{sentence(rng)}\n{shared}\n{sentence(rng)} {sentence(rng)}"} for i in range(4)]
    second = [{"id": f"b{i}", "text": f"{sentence(rng)} {sentence(rng)}\n{shared}"} for i in range(3)]
    second.append({"id": "b9", "text": f"{sentence(rng)} {sentence(rng)}"})
    a = load_config(write_release(tmp_path, "rel-1", first, "{max_docs: 5, buckets: 2}"))
    run_release(a, progress=False)
    assert all(shared in t for t, _ in kept(a.output).values())  # 4 documents: kept
    block = f"{{max_docs: 5, buckets: 2, against: ['{tmp_path}/rel-*']}}"
    b = load_config(write_release(tmp_path, "rel-2", second, block))
    assert b.stages.line_dedup.against == [str(tmp_path / "rel-1")]  # the glob never names this release
    run_release(b, progress=False)
    docs = kept(b.output)
    texts, _ = expected(second, 5, earlier=Counter({shared: 4}))
    assert {i: t for i, (t, _) in docs.items()} == texts
    assert not any(shared in t for t, _ in docs.values())
    assert sorted(removed for _, removed in docs.values()) == [0] + [len(shared)] * 3
    assert stats.funnel(b.output)["adds_up"]
    frequent = stats.connect(b.output).execute("SELECT metric, sum(value) FROM stats WHERE stage = "
                                               "'line_dedup_units' GROUP BY 1").fetchall()
    assert dict(frequent)["frequent_with_earlier"] == 1  # 3 documents here: frequent only with the 4 before


def test_bad_against_fails_at_validation_naming_the_key(tmp_path):
    records = corpus(20)
    with pytest.raises(ConfigError, match=r"stages\.line_dedup\.against\[0\]: no line_dedup index"):
        load_config(write_release(tmp_path, "x", records, f"{{against: ['{tmp_path / 'nowhere'}']}}"))
    first = load_config(write_release(tmp_path, "first", records, "{buckets: 2}"))
    run_release(first, progress=False)
    with pytest.raises(ConfigError, match=r"stages\.line_dedup\.against\[0\]: .*other line_dedup settings"):
        block = f"{{unit: paragraph, buckets: 2, against: [{first.output}]}}"
        load_config(write_release(tmp_path, "y", records, block))
    with pytest.raises(ConfigError, match=r"stages\.line_dedup\.against\[0\]: .* is this release itself"):
        load_config(write_release(tmp_path, "first", records, f"{{buckets: 2, against: [{first.output}]}}"))
    (Path(first.output) / "line_dedup/_counts/bucket-00001.parquet").write_bytes(b"PAR1 nonsense")
    with pytest.raises(ConfigError, match=r"against\[0\]: .*bucket-00001.parquet is not a readable Parquet"):
        load_config(write_release(tmp_path, "z", records, f"{{buckets: 2, against: ['{first.output}']}}"))
    (Path(first.output) / "line_dedup/_index.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"against\[0\]: .*corrupt"):
        load_config(write_release(tmp_path, "z", records, f"{{buckets: 2, against: ['{first.output}']}}"))
    with pytest.raises(ConfigError, match=r"stages\.line_dedup\.unit"):
        load_config(write_release(tmp_path, "u", records, "{unit: sentence}"))


def test_paragraph_units(tmp_path):
    text = "\n\nFirst para line one\nline two of it\n\n\n  \nSecond paragraph here.\n\nlast one"
    assert pieces(text, "paragraph") == ["\n\n", "First para line one\nline two of it\n\n\n  \n",
                                         "Second paragraph here.\n\n", "last one"]
    assert "".join(pieces(text, "line")) == text and "".join(pieces("", "paragraph")) == ""
    disclaimer = "This page is provided as is.\nNo warranty of any kind\nis given or implied."
    rng = random.Random(3)
    records = [{"id": f"p{i}", "text": f"{sentence(rng)}\n{sentence(rng)}\n\n{disclaimer}\n\n{sentence(rng)}"}
               for i in range(3)]
    records.append({"id": "q", "text": f"{sentence(rng)}\nNo warranty of any kind\n\n{sentence(rng)}"})
    cfg = load_config(write_release(tmp_path, "para", records, "{unit: paragraph, max_docs: 2, min_doc_chars: 0}"))
    assert isinstance(cfg.stages.line_dedup, LineDedupConfig)
    run_release(cfg, progress=False)
    docs = kept(cfg.output)
    for r in records[:3]:
        assert docs[r["id"]][0] == r["text"].replace(f"{disclaimer}\n\n", "")
    assert docs["q"] == (records[3]["text"], 0)  # one line of the paragraph alone is another unit
