"""End to end on the shipped sample: funnel, manifest, stats views, resume (engines and crashes: test_engines.py)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import stats
from pipelines.config import load_config
from pipelines.release import run_release
from tests.conftest import SAMPLE

CONFIG = """
release: t
output: {out}
runner: {{kind: local, workers: 2}}
sources:
  - {{name: crawl, paths: ["{inputs}/*.warc.gz"], format: warc}}
stages:
  extract: {{}}
  filter:
    url_blocklist: {{domains: [sources.debian.org]}}
    c4: {{filter_no_terminal_punct: false}}
{extra}  dedup: {{minhash: {{verify: true}}, buckets: 4}}
  mixture: {{budget_tokens: 100000, strata: [source]}}
  tokenize: {{seq_len: 1024}}
"""


def make_config(tmp_path, out="out", inputs=SAMPLE, extra="") -> str:
    path = tmp_path / f"{out}.yaml"
    path.write_text(CONFIG.format(out=tmp_path / out, inputs=inputs, extra=extra))
    return str(path)


def tree(root: Path) -> dict[str, bytes]:
    """Every output file's bytes, except run logs (they hold timings)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "_logs" not in p.parts}


def gristmill(*args, **kw):
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True, **kw)


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sample")
    cfg = load_config(make_config(tmp))
    run_release(cfg, progress=False)
    return cfg, Path(cfg.output)


def test_funnel_adds_up(sample_run):
    cfg, _ = sample_run
    f = stats.funnel(cfg.output)
    assert f["adds_up"]
    assert list(f["stages"]) == ["read", "extract", "filter", "dedup", "mixture", "tokenize"]
    assert f["records_read"] == f["stages"]["extract"]["docs_in"] > 400
    assert 0 < f["kept"] < f["records_read"]
    reasons = {reason for _, reason, _ in f["rejects"]}
    assert "url_blocklist.domain" in reasons and "language.not_allowed" in reasons


def test_layout_and_manifest(sample_run):
    cfg, out = sample_run
    for stage in ("extract", "filter"):
        for part in ("part-00000", "part-00001"):
            assert (out / stage / f"{part}.parquet").exists()
            assert (out / stage / "_rejects" / f"{part}.parquet").exists()
            assert (out / stage / "_stats" / f"{part}.parquet").exists()
            assert (out / stage / f"_SUCCESS.{part}").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config_sha256"] == cfg.content_hash()
    assert [i["path"] for i in manifest["inputs"]] == [str(p) for p in sorted(SAMPLE.glob("*.warc.gz"))]
    files = {o["path"]: o for o in manifest["outputs"]}
    assert files["filter/part-00000.parquet"]["rows"] > 0
    import hashlib
    assert files["filter/part-00001.parquet"]["sha256"] == hashlib.sha256(
        (out / "filter/part-00001.parquet").read_bytes()).hexdigest()
    assert manifest["counts"]["adds_up"] is True


def test_kept_documents_look_right(sample_run):
    cfg, _ = sample_run
    con = stats.connect(cfg.output)
    rows = con.execute("SELECT id, url, language, length(text), charset FROM docs_dedup").fetchall()
    assert all(lang == "en" for _, _, lang, _, _ in rows)
    assert not any("sources.debian.org" in url for _, url, *_ in rows)
    assert len({r[0] for r in rows}) == len(rows)
    # every record is in exactly one place
    n_kept = len(rows)
    n_rejected = con.execute("SELECT count(*) FROM rejects").fetchone()[0]
    n_errors = con.execute("SELECT count(*) FROM errors").fetchone()[0]
    n_read = con.execute("SELECT sum(value) FROM stats WHERE stage='read' AND metric='docs_in'").fetchone()[0]
    assert n_kept + n_rejected + n_errors == n_read


def test_stats_cli(sample_run, tmp_path):
    cfg, _ = sample_run
    out = gristmill("stats", cfg.output)
    assert out.returncode == 0 and "adds up" in out.stdout and "url_blocklist.domain" in out.stdout
    out = gristmill("stats", cfg.output, "--sql", "SELECT reason, count(*) AS n FROM rejects GROUP BY reason")
    assert out.returncode == 0 and "language.not_allowed" in out.stdout
    bad_sql = gristmill("stats", cfg.output, "--sql", "SELECT no_such_column FROM rejects")
    assert bad_sql.returncode == 1 and "SQL error" in bad_sql.stderr
    missing = gristmill("stats", str(tmp_path / "nothing"))
    assert missing.returncode == 1 and "no release statistics found" in missing.stderr


def test_rerun_does_nothing_whatever_the_workers(sample_run, tmp_path):
    cfg, out = sample_run
    before = tree(out)
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet")}
    log = run_release(cfg.model_copy(update={"runner": cfg.runner.model_copy(update={"workers": 1})}), progress=False)
    # documents, dedup map/reduce/cluster/apply, mixture features/plan/apply, tokenize/shuffle/write
    assert log["skipped"] == log["tasks"] == 2 + 2 + 4 + 1 + 2 + 2 + 1 + 2 + 2 + 1 + 2
    assert tree(out) == before
    assert mtimes == {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet")}


def test_changed_filter_reuses_extract(tmp_path):
    cfg = load_config(make_config(tmp_path))
    run_release(cfg, progress=False)
    out = Path(cfg.output)
    extract_mtime = (out / "extract/part-00000.parquet").stat().st_mtime_ns
    kept_before = stats.funnel(cfg.output)["kept"]
    cfg2 = load_config(make_config(tmp_path, extra="    fineweb: {enabled: false}\n"))
    log = run_release(cfg2, progress=False)
    assert "extract" not in {s for r in log["reports"] for s in r["stages"]}  # extract was not redone
    assert (out / "extract/part-00000.parquet").stat().st_mtime_ns == extract_mtime
    assert stats.funnel(cfg.output)["kept"] > kept_before
    assert stats.funnel(cfg.output)["adds_up"]


def test_bytes_do_not_depend_on_batching_or_resume_point(tmp_path, monkeypatch):
    """Small batches and row groups force many of both; a filter resumed from the extract output
    must write the same bytes as one that was fed batch by batch from the reader."""
    from pipelines import io, shard_task

    monkeypatch.setattr(io, "GROUP_ROWS", 7)
    monkeypatch.setattr(shard_task, "BATCH_DOCS", 5)
    reference = load_config(make_config(tmp_path, out="reference"), {"runner.workers": 1})
    run_release(reference, progress=False)

    monkeypatch.setattr(shard_task, "BATCH_DOCS", 64)
    resumed = load_config(make_config(tmp_path, out="resumed"), {"runner.workers": 1})
    run_release(resumed, progress=False)
    out = Path(resumed.output)
    for path in [*out.glob("filter/*"), *out.glob("filter/_*/*"), *out.glob("dedup/**/*"), *out.glob("mixture/**/*"),
                 *out.glob("tokenize/**/*"),
                 out / "manifest.json"]:
        if path.is_file():
            path.unlink()
    log = run_release(resumed, progress=False)
    assert "extract" not in {s for r in log["reports"] for s in r["stages"]}
    assert tree(out) == tree(Path(reference.output))


def test_per_document_stages_after_a_global_stage(tmp_path, monkeypatch):
    """The registry's order is the pipeline's: a per-document stage placed after a global one runs as a
    second documents phase over that stage's output (as a decontamination stage after dedup would)."""
    from pipelines import release

    order = [s.name for s in release.STAGES]
    moved = [s for s in release.STAGES if s.name != "filter"]
    moved.insert(order.index("dedup"), release.STAGES[order.index("filter")])  # filter right after dedup
    monkeypatch.setattr(release, "STAGES", tuple(moved))
    monkeypatch.setattr(stats, "STAGE_ORDER", ["read"] + [s.name for s in moved])
    text = CONFIG.format(out=tmp_path / "out", inputs=SAMPLE, extra="").replace(
        "dedup: {minhash: {verify: true}, buckets: 4}", "dedup: {buckets: 2}")
    text = text[: text.index("  mixture:")]
    (tmp_path / "c.yaml").write_text(text)
    cfg = load_config(str(tmp_path / "c.yaml"))
    log = run_release(cfg, progress=False)
    assert [r["phase"].split(": ")[1] for r in sorted(log["reports"], key=lambda r: r["started"])][-2:] \
        == ["documents 2", "documents 2"]
    f = stats.funnel(cfg.output)
    assert f["adds_up"] and f["stages"]["filter"]["docs_in"] == f["stages"]["dedup"]["docs_out"]
    assert f["stages"]["dedup"]["docs_in"] == f["stages"]["extract"]["docs_out"]
    con = stats.connect(cfg.output)
    columns = {r[0] for r in con.execute("DESCRIBE docs_filter").fetchall()}
    assert {"charset", "language", "pii_redactions"} <= columns

    again = run_release(cfg, progress=False)
    assert again["skipped"] == again["tasks"]
    changed = load_config(str(tmp_path / "c.yaml"), {"stages.dedup.buckets": 3})
    log = run_release(changed, progress=False)
    redone = {r["phase"].split(": ")[1] for r in log["reports"] if not r["skipped"]}
    assert "documents 2" in redone and "documents" not in redone  # filter follows dedup; extract does not
