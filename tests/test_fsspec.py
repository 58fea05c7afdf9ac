"""Inputs and outputs through fsspec URIs work like local paths (memory:// stands in for s3://)."""

import fsspec

from pipelines import stats
from pipelines.config import load_config
from pipelines.release import run_release
from tests.conftest import SAMPLE


def test_release_on_an_object_store(tmp_path):
    fs = fsspec.filesystem("memory")
    for path in sorted(SAMPLE.glob("*.warc.gz")):
        fs.pipe(f"/bucket/crawl/{path.name}", path.read_bytes())
    config = tmp_path / "mem.yaml"
    config.write_text("""
release: mem
output: memory://bucket/releases/mem
runner: {kind: local, workers: 1}   # memory:// lives in this process only
sources:
  - {name: crawl, paths: ["memory://bucket/crawl/*.warc.gz"], format: warc}
stages:
  extract: {}
  filter: {c4: {filter_no_terminal_punct: false}}
  mixture: {budget_tokens: 5000, strata: [cluster], climb: {clusters: 2}}   # its plan reads through DuckDB
""")
    cfg = load_config(str(config))
    run_release(cfg, progress=False)
    assert fs.exists("/bucket/releases/mem/manifest.json")
    assert fs.exists("/bucket/releases/mem/filter/_SUCCESS.part-00001")
    f = stats.funnel(cfg.output)
    assert f["adds_up"] and f["kept"] > 0
    assert fs.exists("/bucket/releases/mem/mixture/_plan/selection.parquet")
    log = run_release(cfg, progress=False)
    assert log["skipped"] == log["tasks"] == 10  # all done: 2 documents, 2 features, kmeans, 2 assign, plan, 2 apply
