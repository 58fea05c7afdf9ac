"""dedup: exact and near duplicates found and removed deterministically, across releases, with clear errors."""

import json
from pathlib import Path

import numpy as np
import pytest

from pipelines import stats
from pipelines.config import ConfigError, load_config
from pipelines.dedup import minhash
from pipelines.release import run_release
from tests.warc_factory import PROSE

BASE = " ".join(PROSE) + " " + " ".join(f"Paragraph {w} of the report discusses item {w}." for w in "abcdefghij")
OTHER = ("A completely different text about databases, indexes and query planners, which explains how "
         "a cost based optimizer chooses between sequential scans and index scans on large tables. ") * 3


def near(text: str, i: int) -> str:
    words = text.split()
    words[len(words) // 2 + i] = "CHANGED"  # one word in ~200: Jaccard of 5-shingles ~0.95
    return " ".join(words)


def release(tmp_path, records, dedup="{}", name="r", against=None):
    data = tmp_path / f"{name}.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    config = tmp_path / f"{name}.yaml"
    config.write_text(f"""
release: {name}
output: {tmp_path / name}
runner: {{kind: local, workers: 2}}
sources:
  - {{name: docs, paths: ["{data}"], format: jsonl}}
stages:
  dedup: {dedup}
""")
    return str(config)


def outcome(out: Path) -> tuple[set, dict]:
    con = stats.connect(str(out))
    kept = {i for (i,) in con.execute("SELECT id FROM docs_dedup").fetchall()}
    removed = {i: (reason, detail, dup) for i, reason, detail, dup in
               con.execute("SELECT id, reason, detail, duplicate_of FROM rejects WHERE stage='dedup'").fetchall()}
    return kept, removed


RECORDS = [
    {"id": "a1", "text": BASE},
    {"id": "a2", "text": BASE.upper()},  # same after normalisation: exact
    {"id": "a3", "text": near(BASE, 0)},
    {"id": "a4", "text": near(BASE, 3)},
    {"id": "b1", "text": OTHER},
    {"id": "c1", "text": "Short note."},
    {"id": "c2", "text": "short NOTE!"},  # shorter than 5 words: one shingle, still an exact duplicate
    {"id": "e1", "text": "   "},
]


def test_exact_and_near_duplicates(tmp_path):
    cfg = load_config(release(tmp_path, RECORDS))
    run_release(cfg, progress=False)
    kept, removed = outcome(Path(cfg.output))
    assert kept == {"a1", "b1", "c1"}
    assert removed == {"a2": ("duplicate", "exact", "a1"), "a3": ("duplicate", "minhash", "a1"),
                       "a4": ("duplicate", "minhash", "a1"), "c2": ("duplicate", "exact", "c1"),
                       "e1": ("empty_text", None, None)}
    assert stats.funnel(cfg.output)["adds_up"]


def test_keep_longest_and_verification(tmp_path):
    records = RECORDS[:4] + [{"id": "a0", "text": BASE + " An extra closing sentence makes this one longest."}]
    cfg = load_config(release(tmp_path, records, "{keep: longest, minhash: {verify: true, verify_threshold: 0.8}}"))
    run_release(cfg, progress=False)
    kept, removed = outcome(Path(cfg.output))
    assert kept == {"a0"} and {dup for _, _, dup in removed.values()} == {"a0"}


def test_out_of_core_components_match_union_find(tmp_path):
    a = load_config(release(tmp_path, RECORDS, name="uf"))
    b = load_config(release(tmp_path, RECORDS, "{max_union_find_edges: 0}", name="lp"))
    run_release(a, progress=False)
    run_release(b, progress=False)
    assert outcome(Path(a.output)) == outcome(Path(b.output))


def test_against_an_earlier_release(tmp_path):
    first = load_config(release(tmp_path, RECORDS[:2] + RECORDS[4:5], name="first"))
    run_release(first, progress=False)
    later = [{"id": "n1", "text": near(BASE, 5)}, {"id": "n2", "text": "Something entirely new " * 10},
             {"id": "b1", "text": OTHER}]
    cfg = load_config(release(tmp_path, later, f"{{against: [{first.output}]}}", name="second"))
    run_release(cfg, progress=False)
    kept, removed = outcome(Path(cfg.output))
    assert kept == {"n2"}
    assert removed == {"n1": ("duplicate", "minhash", "a1"), "b1": ("duplicate", "exact", "b1")}


def test_missing_or_corrupt_against_index_fails_before_work(tmp_path):
    with pytest.raises(ConfigError, match=r"stages\.dedup\.against\[0\]: no dedup index"):
        load_config(release(tmp_path, RECORDS, f"{{against: [{tmp_path / 'nowhere'}]}}"))
    first = load_config(release(tmp_path, RECORDS, name="first"))
    run_release(first, progress=False)
    (Path(first.output) / "dedup/_index.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"against\[0\]: .*corrupt"):
        load_config(release(tmp_path, RECORDS, f"{{against: [{first.output}]}}", name="x"))
    (Path(first.output) / "dedup/_index.json").write_text(json.dumps({"params": {"other": 1}}))
    with pytest.raises(ConfigError, match=r"other MinHash settings"):
        load_config(release(tmp_path, RECORDS, f"{{against: [{first.output}]}}", name="y"))


def test_bands_times_rows_must_equal_num_perm(tmp_path):
    with pytest.raises(ConfigError, match=r"stages\.dedup\.minhash\.rows: .*bands x rows must equal num_perm"):
        load_config(release(tmp_path, RECORDS, "{minhash: {num_perm: 100, bands: 14, rows: 8}}"))


def test_signature_estimates_jaccard_and_huge_documents():
    seeds = minhash.seeds(256, 7)
    a = minhash.shingle_hashes(minhash.normalize(BASE), 5)
    b = minhash.shingle_hashes(minhash.normalize(near(BASE, 0) + " extra words at the end here"), 5)
    estimate = (minhash.signature(a, seeds) == minhash.signature(b, seeds)).mean()
    assert abs(estimate - minhash.jaccard(a, b)) < 0.1
    huge = minhash.normalize(" ".join(f"w{i % 5000}x{i // 5000}" for i in range(2_000_000)))  # ~10M chars
    assert len(huge) > 9_000_000
    sig = minhash.signature(minhash.shingle_hashes(huge, 5), seeds)
    assert sig.shape == (256,) and (sig < minhash.MASK).all()
    curve = minhash.s_curve(np.array([0.5, 0.8, 0.95]), 14, 8)
    assert curve[0] < 0.3 and curve[1] > 0.9 and curve[2] > 0.999
