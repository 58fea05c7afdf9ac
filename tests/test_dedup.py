"""dedup: exact and near duplicates found and removed deterministically, across releases, with clear errors."""

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipelines import stats
from pipelines.config import ConfigError, load_config
from pipelines.dedup import minhash
from pipelines.dedup.config import DedupConfig
from pipelines.dedup.index import index_params
from pipelines.release import run_release
from tests.test_release import tree
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
    return release_config(tmp_path, name, str(data), dedup)


def release_config(tmp_path, name: str, paths: str, dedup: str) -> str:
    """A release of the JSON Lines inputs `paths` (a glob) through dedup alone."""
    config = tmp_path / f"{name}.yaml"
    config.write_text(f"""
release: {name}
output: {tmp_path / name}
runner: {{kind: local, workers: 2}}
sources:
  - {{name: docs, paths: ["{paths}"], format: jsonl}}
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


@pytest.mark.parametrize("settings", ["", "keep: longest, ", "cluster: components, "])
def test_out_of_core_clusters_match_in_memory(tmp_path, settings):
    """Past max_union_find_edges, anchored runs in DuckDB and components by label propagation: the same
    documents removed, the same clusters file and the same statistics as in memory."""
    a = load_config(release(tmp_path, RECORDS, f"{{{settings}}}", name="memory"))
    b = load_config(release(tmp_path, RECORDS, f"{{{settings}max_union_find_edges: 0}}", name="disk"))
    run_release(a, progress=False)
    run_release(b, progress=False)
    assert outcome(Path(a.output)) == outcome(Path(b.output))
    for name in ("_clusters/clusters.parquet", "_stats/clusters.parquet"):
        assert (Path(a.output) / "dedup" / name).read_bytes() == (Path(b.output) / "dedup" / name).read_bytes()


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


def shingles(text: str) -> np.ndarray:
    return minhash.shingle_hashes(minhash.normalize(text), 5)


def jaccard(a: str, b: str) -> float:
    return minhash.jaccard(shingles(a), shingles(b))


def edit(text: str, positions) -> str:
    """Each word at `positions` replaced by a distinct made-up word (5 shingles lost per isolated edit)."""
    words = text.split()
    for n, p in enumerate(positions):
        words[p] = "zq" + "".join(chr(97 + int(d)) for d in str(n + 1000 * p))
    return " ".join(words)


# A ~ B ~ C, A !~ C: B edits 4 spaced words of A, C 4 more of B (Jaccard ~0.82, ~0.82, ~0.67)
CHAIN_A = BASE
CHAIN_B = edit(CHAIN_A, [20, 60, 100, 140])
CHAIN_C = edit(CHAIN_B, [40, 80, 120, 160])


def test_chain_components_versus_anchored(tmp_path):
    assert jaccard(CHAIN_A, CHAIN_B) >= 0.7 and jaccard(CHAIN_B, CHAIN_C) >= 0.7 > jaccard(CHAIN_A, CHAIN_C)
    records = [{"id": "A", "text": CHAIN_A}, {"id": "B", "text": CHAIN_B}, {"id": "C", "text": CHAIN_C}]
    comp = load_config(release(tmp_path, records, "{cluster: components}", name="comp"))
    anch = load_config(release(tmp_path, records, name="anch"))  # the default: anchored, verified
    run_release(comp, progress=False)
    run_release(anch, progress=False)
    assert outcome(Path(comp.output)) == ({"A"}, {"B": ("duplicate", "minhash", "A"),
                                                  "C": ("duplicate", "minhash", "A")})
    assert outcome(Path(anch.output)) == ({"A", "C"}, {"B": ("duplicate", "minhash", "A")})
    sizes = stats.connect(anch.output).execute(
        "SELECT metric, value FROM stats WHERE stage = 'dedup_clusters' AND metric LIKE 'cluster_size.%'").fetchall()
    assert sizes == [("cluster_size.2", 1.0)]  # one group: A and the B it removed
    # out of core (a DuckDB-sorted stream of edges) decides the same
    ooc = load_config(release(tmp_path, records, "{max_union_find_edges: 0}", name="ooc"))
    run_release(ooc, progress=False)
    assert outcome(Path(ooc.output)) == outcome(Path(anch.output))


def test_verification_covers_pairs_beyond_the_group_minimum(tmp_path):
    """b0 shares its only band key with b1 and b2 but is not a near duplicate of them; b1 ~ b2 are. Checking
    only the edges to the group's smallest id (b0) never links b1 and b2."""
    b1 = " ".join(PROSE)
    b2 = near(b1, 0)
    b0 = " ".join(b1.split()[: len(b1.split()) // 2]) + " " + OTHER
    assert jaccard(b1, b2) >= 0.7 and jaccard(b0, b1) < 0.7 and jaccard(b0, b2) < 0.7
    sets = [shingles(t) for t in (b0, b1, b2)]
    seed = next(s for s in range(1000)  # one band of one row: a seed under which all three share the key
                if len({int(minhash.signature(x, minhash.seeds(1, s))[0]) for x in sets}) == 1)
    records = [{"id": "b0", "text": b0}, {"id": "b1", "text": b1}, {"id": "b2", "text": b2}]
    for mode in ("anchored", "components"):
        cfg = load_config(release(tmp_path, records, f"{{cluster: {mode}, minhash: {{num_perm: 1, bands: 1, rows: 1, "
                                                     f"seed: {seed}}}}}", name=mode))
        run_release(cfg, progress=False)
        assert outcome(Path(cfg.output)) == ({"b0", "b1"}, {"b2": ("duplicate", "minhash", "b1")})


def paragraphs() -> list[str]:
    """Real text: paragraphs of 60+ words from the Python docs validation set."""
    found = []
    with open(Path(__file__).parent / "data/validation/python-docs.jsonl") as f:
        for line in f:
            found += [p for p in json.loads(line)["text"].split("\n\n") if len(p.split()) >= 60]
    return found


def variants(count: int = 12) -> dict[str, str]:
    """id -> text: for each of `count` real paragraphs, a chain of 6 variants, each with 1-4 % of the words
    of the one before edited (so neighbours are near duplicates and the chain's ends are not)."""
    rng = np.random.default_rng(0)
    texts = {}
    for i, paragraph in enumerate(paragraphs()[:count]):
        variant = paragraph
        for _ in range(6):
            texts[f"p{i:02d}-{rng.integers(10**6):06d}"] = variant
            n = len(variant.split())
            variant = edit(variant, rng.choice(n, size=max(1, round(n * rng.uniform(0.01, 0.04))), replace=False))
    return texts


def test_every_removed_document_is_a_near_duplicate_of_its_keeper(tmp_path):
    texts = variants()
    records = [{"id": i, "text": t} for i, t in sorted(texts.items())]
    anch = load_config(release(tmp_path, records, name="anch"))  # defaults
    comp = load_config(release(tmp_path, records, "{cluster: components}", name="comp"))
    run_release(anch, progress=False)
    run_release(comp, progress=False)
    kept, removed = outcome(Path(anch.output))
    assert len(removed) >= 20 and kept | set(removed) == set(texts)
    assert all(dup in kept and jaccard(texts[i], texts[dup]) >= 0.7 for i, (_, _, dup) in removed.items())
    _, chained = outcome(Path(comp.output))  # components chain past the threshold on this set
    assert any(jaccard(texts[i], texts[dup]) < 0.7 for i, (_, _, dup) in chained.items())


def test_map_streams_signatures_in_row_groups(tmp_path):
    """The map writes its shingles a row group (1,000 documents) at a time, so its memory is one group's,
    not its shard's; every document is there once, in input order."""
    records = [{"id": f"d{i:04d}", "text": f"document {i} has a few words of its own {i * 7}"} for i in range(2500)]
    cfg = load_config(release(tmp_path, records))
    run_release(cfg, progress=False)
    sig = pq.ParquetFile(Path(cfg.output) / "dedup/_sig/part-00000.parquet")
    assert [sig.metadata.row_group(g).num_rows for g in range(sig.num_row_groups)] == [1000, 1000, 500]
    table = sig.read(columns=["id", "shingles"])
    assert table.column("id").to_pylist() == [r["id"] for r in records]
    assert all(len(s) for s in table.column("shingles").to_pylist())


def test_anchored_checks_only_pairs_that_can_remove(tmp_path):
    """10 mutual near copies: the first kept removes the 9 others after 9 checks (45 pairs are candidates)."""
    base = " ".join(PROSE)
    records = [{"id": f"c{i}", "text": edit(base, [10 + i])} for i in range(10)]
    assert min(jaccard(a["text"], b["text"]) for a in records for b in records) >= 0.8
    cfg = load_config(release(tmp_path, records))
    run_release(cfg, progress=False)
    kept, removed = outcome(Path(cfg.output))
    assert kept == {"c0"} and {dup for _, _, dup in removed.values()} == {"c0"}
    metrics = dict(stats.connect(cfg.output).execute(
        "SELECT metric, value FROM stats WHERE stage = 'dedup_clusters'").fetchall())
    assert metrics["candidate_pairs"] == 45 and metrics["pairs_checked"] == 9


@settings(max_examples=300, derandomize=True)
@given(st.sets(st.integers(0, 40)), st.sets(st.integers(0, 40)))
def test_jaccard_of_sorted_hashes_is_exact(a, b):
    expected = len(a & b) / len(a | b) if a or b else 1.0
    spread = [np.array(sorted(x * 0x9E3779B97F4A7C15 % 2**64 for x in s), np.uint64) for s in (a, b)]  # all 64 bits
    assert minhash.jaccard(*spread) == expected


@settings(max_examples=300, derandomize=True)
@given(st.text(st.characters(max_codepoint=127)), st.booleans(), st.booleans(), st.booleans())
@example("".join(f"a{chr(c)}B" for c in range(128)), True, True, True)
def test_ascii_normalisation_matches_the_unicode_path(text, lowercase, digits, punctuation):
    """ASCII text takes a translate table; it must normalise exactly as the general path does."""
    flags = (lowercase, digits, punctuation)
    assert minhash.normalize(text, *flags) == minhash.normalize(text + "é", *flags).removesuffix("é").rstrip()


def test_anchored_against_an_earlier_release(tmp_path):
    """Documents already shipped are visited first: they remove their near duplicates whatever their
    ids, and a document they removed removes nothing."""
    first = load_config(release(tmp_path, [{"id": "z9", "text": CHAIN_A}], name="first"))
    run_release(first, progress=False)
    later = [{"id": "a0", "text": CHAIN_B}, {"id": "a1", "text": CHAIN_C}, {"id": "a2", "text": CHAIN_A.upper()}]
    cfg = load_config(release(tmp_path, later, f"{{against: [{first.output}]}}", name="second"))
    run_release(cfg, progress=False)
    assert outcome(Path(cfg.output)) == ({"a1"}, {"a0": ("duplicate", "minhash", "z9"),
                                                  "a2": ("duplicate", "exact", "z9")})


def test_anchored_bytes_are_the_same_on_every_engine(ray_cluster, tmp_path):
    """dedup, and url_dedup and line_dedup before it, give the same bytes on every engine."""
    records = [{"id": i, "text": t, "url": f"https://example.org/{i}"} for i, t in sorted(variants(6).items())]
    records += [{"id": f"x{i}", "text": f"Shared footer line of five pages.\n{OTHER} {i}",
                 "url": f"https://x.org/{i // 2}"} for i in range(5)]  # 3 URLs, and one line in 5 documents
    config = release(tmp_path, records, "{buckets: 4}")
    Path(config).write_text(Path(config).read_text().replace(
        "  dedup: {buckets: 4}", "  url_dedup: {keep: longest}\n  line_dedup: {max_docs: 2}\n  dedup: {buckets: 4}"))
    trees = {}
    for kind, workers in (("local", 1), ("local", 2), ("ray", 2), ("beam", 2)):
        out = tmp_path / f"{kind}-{workers}"
        run_release(load_config(config, {"runner.kind": kind, "runner.workers": workers, "output": str(out)}),
                    progress=False)
        trees[kind, workers] = {k: v for k, v in tree(out).items() if k.split("/")[0] in ("url_dedup", "line_dedup",
                                                                                         "dedup")}
    assert len(outcome(tmp_path / "local-1")[1]) >= 10  # documents were removed
    funnel = stats.funnel(str(tmp_path / "local-1"))["stages"]
    assert funnel["url_dedup"]["rejected"] == 2
    removed_lines = stats.connect(str(tmp_path / "local-1")).sql(
        "SELECT sum(value) FROM stats WHERE stage = 'line_dedup' AND metric = 'units_removed'").fetchall()[0][0]
    assert removed_lines == 3  # the footer, from the 3 documents left after url_dedup
    assert all(t == trees["local", 1] for t in trees.values())


def test_index_params_ignore_verification_and_cluster_mode():
    """An earlier release's band index stays usable whatever the later one verifies or how it clusters."""
    plain = DedupConfig(cluster="components", minhash={"verify": False, "verify_threshold": 0.9,
                                                       "max_pairs_per_member": 3})
    assert index_params(DedupConfig()) == index_params(plain)
    assert index_params(DedupConfig()) != index_params(DedupConfig(minhash={"seed": 2}))


def test_hostile_documents_through_every_dedup_stage(tmp_path):
    """Empty text, whitespace only, a 10M-character document and URL oddities: every dedup stage runs,
    nothing is lost and the funnel adds up."""
    huge = " ".join(f"w{i % 50_000}" for i in range(1_500_000))  # ~10M characters
    records = [
        {"id": "e1", "text": "", "url": "http://example.org/a"},
        {"id": "e2", "text": "   \n\n  ", "url": "HTTP://Example.org:80/a/#frag"},
        {"id": "h1", "text": huge, "url": "http://[::1"},
        {"id": "h2", "text": huge + " tail", "url": None},
        *({"id": f"d{i}", "text": near(BASE, i), "url": f"https://example.org/p?utm_source=x&i={i}"}
          for i in range(3)),
    ]
    assert len(huge) > 9_000_000
    config = release(tmp_path, records, "{}")
    Path(config).write_text(Path(config).read_text().replace(
        "  dedup: {}", "  url_dedup: {}\n  line_dedup: {max_docs: 2}\n  dedup: {}"))
    run_release(load_config(config), progress=False)
    funnel = stats.funnel(str(tmp_path / "r"))
    assert funnel["adds_up"] and funnel["records_read"] == len(records)
    kept, removed = outcome(tmp_path / "r")
    assert "h1" in kept and removed["h2"][:2] == ("duplicate", "minhash")  # the 10M-character pair, verified
    assert {"d0", "d1", "d2"} - kept == {"d1", "d2"}  # near copies of d0
    con = stats.connect(str(tmp_path / "r"))
    reasons = dict(con.execute("SELECT id, stage || ':' || reason FROM rejects").fetchall())
    assert reasons["e2"] == "url_dedup:duplicate_url"  # the same page as e1 once normalised
    assert reasons["e1"] in ("line_dedup:boilerplate_only", "dedup:empty_text")


def test_fewer_buckets_on_rerun_reads_no_old_edges(tmp_path):
    """A rerun with fewer buckets must not read the edge files of the buckets that are gone."""
    records = [{"id": "a1", "text": BASE}, {"id": "a3", "text": near(BASE, 0)}, {"id": "b1", "text": OTHER}]
    run_release(load_config(release(tmp_path, records, "{buckets: 8, minhash: {verify: false}, cluster: components}")),
                progress=False)
    assert outcome(tmp_path / "r")[0] == {"a1", "b1"}
    records[1]["text"] = "An unrelated page about gardening, soil, tomatoes and the weather in the spring. " * 4
    run_release(load_config(release(tmp_path, records, "{buckets: 1, minhash: {verify: false}, cluster: components}")),
                progress=False)
    assert outcome(tmp_path / "r")[0] == {"a1", "a3", "b1"}
