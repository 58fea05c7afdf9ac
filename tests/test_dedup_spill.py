"""dedup's global steps at scale (issue 19): the reduce runs in DuckDB under a memory limit (spilling to
disk) with the same edges as the pure-Python reduce it replaced, and `buckets: auto` follows the corpus."""

import json
import random
from collections import Counter
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import io
from pipelines.config import load_config
from pipelines.dedup.config import DedupConfig
from pipelines.dedup.index import index_params
from pipelines.dedup.tasks import BAND_SCHEMA, EDGE_SCHEMA, EXACT_BAND, DedupGlobalTask, edges_query, run_reduce
from pipelines.phase import fingerprint_data
from pipelines.release import run_release
from pipelines.stage import bucket_name
from tests.test_dedup import BASE, RECORDS, near, outcome, release, release_config


def write_bands(release: Path, rows: list[tuple], part: str = "part-00000", bucket: int = 0) -> None:
    folder = release / "dedup" / "_bands" / bucket_name(bucket)
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist([dict(zip(("band", "key", "id"), r, strict=True)) for r in rows], BAND_SCHEMA)
    pq.write_table(table, folder / f"{part}.parquet")


def reference_edges(rows: list[tuple], k: int) -> list[tuple]:
    """The reduce as it was in Python: rows (band, key, origin, node) -> sorted (a, b, exact)."""
    groups: dict[tuple, list] = {}
    for band, key, origin, node in rows:
        groups.setdefault((band, key), []).append((origin, node))
    pairs: dict[tuple, bool] = {}
    for (band, _), members in groups.items():
        members.sort()
        exact = band == EXACT_BAND
        for i in range(1, len(members)):
            if members[i][0]:
                for _, a in members[: 1 if exact else min(i, k)]:
                    if a != members[i][1]:
                        pair = (min(a, members[i][1]), max(a, members[i][1]))
                        pairs[pair] = pairs.get(pair, False) or exact
    return [(a, b, exact) for (a, b), exact in sorted(pairs.items())]


def edges_of(release: Path, bucket: int = 0) -> list[tuple]:
    table = pq.read_table(release / "dedup" / "_edges" / f"{bucket_name(bucket)}.parquet")
    return list(zip(*(table.column(c).to_pylist() for c in ("a", "b", "exact")), strict=True))


@pytest.mark.parametrize("seed", range(5))
def test_reduce_edges_match_the_python_reduce(tmp_path, seed):
    """Random groups with exact bands, an earlier release (`against`), groups larger than
    max_pairs_per_member and an id found in two parts: the same edges in the same order."""
    rng = random.Random(seed)
    ids = [f"d{i:03d}" for i in range(60)] + ["é", "Z", "a'b"]  # code point order, a quote
    here, earlier, rows = tmp_path / "here", tmp_path / "earlier", []
    for origin, folder, parts in ((1, here, 3), (0, earlier, 2)):
        for p in range(parts):
            part = [(rng.choice([EXACT_BAND, 0, 1, 2]), rng.randrange(6), rng.choice(ids))
                    for _ in range(rng.randrange(5, 60))]
            write_bands(folder, part, f"part-{p:05d}")
            rows += [(b, key, origin, ("" if origin else "@0:") + i) for b, key, i in part]
    cfg = DedupConfig(buckets=1, against=[str(earlier)], minhash={"max_pairs_per_member": 3})
    run_reduce(DedupGlobalTask(str(here), cfg, "fp", 0))
    assert edges_of(here) == reference_edges(rows, 3)
    assert max(Counter(r[:2] for r in rows).values()) > 4  # some group beyond the limit


def test_reduce_without_band_files_writes_an_empty_edges_file(tmp_path):
    run_reduce(DedupGlobalTask(str(tmp_path), DedupConfig(buckets=1), "fp", 0))
    assert edges_of(tmp_path) == []


def test_reduce_spills_under_its_memory_limit(tmp_path):
    """A bucket too large for the limit: without a spill folder DuckDB runs out of memory, with one
    (SpillConfig, as the task runs) it finishes with the edges of an unlimited run."""
    n = 1_000_000
    rng = np.random.default_rng(0)
    table = pa.table({"band": rng.integers(0, 14, n).astype(np.int16),
                      "key": rng.integers(0, n // 3, n).astype(np.uint64),  # groups of about 3
                      "id": [f"doc-{i:09d}" for i in range(n)]}, schema=BAND_SCHEMA)
    (tmp_path / "dedup/_bands/bucket-00000").mkdir(parents=True)
    pq.write_table(table, tmp_path / "dedup/_bands/bucket-00000/part-00000.parquet")
    memory = {"memory_limit": "50MB", "threads": 1}
    task = DedupGlobalTask(str(tmp_path), DedupConfig(buckets=1, memory=memory), "fp", 0)
    with pytest.raises(duckdb.OutOfMemoryException):
        duckdb.connect(config=memory | {"temp_directory": ""}).sql(edges_query(task)).to_arrow_table()
    io.write_batches(str(tmp_path / "unlimited.parquet"), duckdb.connect().sql(edges_query(task)).to_arrow_reader(),
                     EDGE_SCHEMA)
    assert run_reduce(task)["dedup_reduce"]["edges"] > 100_000
    assert pq.read_table(tmp_path / "dedup/_edges/bucket-00000.parquet").equals(
        pq.read_table(tmp_path / "unlimited.parquet"))


def test_memory_setting_is_not_fingerprinted():
    """How the steps run, not what they write: no rerun, and an earlier release's index stays usable."""
    small = DedupConfig(buckets=16, memory={"memory_limit": "5MB", "spill_dir": "/scratch", "threads": 1})
    assert fingerprint_data(small) == fingerprint_data(DedupConfig(buckets=16))
    assert index_params(small) == index_params(DedupConfig(buckets=16))


def many_shards(tmp_path: Path, name: str, shards: int, dedup: str = "{}") -> str:
    """A release of `shards` JSON Lines inputs with one near-duplicate pair."""
    data = tmp_path / f"{name}-data"
    data.mkdir()
    for s in range(shards):
        (data / f"{s:03d}.jsonl").write_text(json.dumps({"id": f"{name}{s}", "text": near(BASE, s)}) + "\n")
    return release_config(tmp_path, name, f"{data}/*.jsonl", dedup)


def test_auto_buckets_follow_the_shards_and_the_earlier_release(tmp_path):
    assert load_config(many_shards(tmp_path, "one", 1)).stages.dedup.buckets == 16  # at least 16
    assert load_config(many_shards(tmp_path, "named", 1, "{buckets: auto}")).stages.dedup.buckets == 16
    assert load_config(many_shards(tmp_path, "fixed", 40, "{buckets: 5}")).stages.dedup.buckets == 5
    big = load_config(many_shards(tmp_path, "big", 17))
    assert big.stages.dedup.buckets == 32  # one per shard, rounded up to a power of two
    run_release(big, progress=False)
    out = Path(big.output)
    assert json.loads((out / "dedup/_index.json").read_text())["params"]["buckets"] == 32
    assert len(list((out / "dedup/_bands").iterdir())) == 32
    later = load_config(many_shards(tmp_path, "later", 2, f"{{against: [{big.output}]}}"))
    assert later.stages.dedup.buckets == 32  # the earlier release's: its keys are in those buckets
    run_release(later, progress=False)
    assert json.loads((Path(later.output) / "dedup/_index.json").read_text())["params"]["buckets"] == 32


def test_dedup_on_an_object_store(tmp_path):
    """Every dedup step reads and writes through fsspec (memory:// stands in for s3://)."""
    config = Path(release(tmp_path, RECORDS))
    output = f"memory://bucket/{tmp_path.name}/r"
    config.write_text(config.read_text().replace(f"output: {tmp_path / 'r'}", f"output: {output}")
                      .replace("workers: 2", "workers: 1"))  # memory:// lives in this process only
    run_release(load_config(str(config)), progress=False)
    kept, removed = outcome(output)
    assert kept == {"a1", "b1", "c1"} and removed["a3"] == ("duplicate", "minhash", "a1")
