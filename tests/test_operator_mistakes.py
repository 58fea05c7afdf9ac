"""What a tired operator does to a release folder: two runs at once, an input removed between runs,
an output named like a glob. Small JSONL releases (no extraction), run in-process."""

import json
import logging
import subprocess
from pathlib import Path

import pytest

from pipelines import stats
from pipelines.cli import main
from pipelines.config import load_config
from pipelines.diff import diff
from pipelines.lock import ReleaseLocked
from pipelines.release import run_release

CONFIG = """
release: t
output: "{out}"
runner: {{kind: local, workers: 1}}
sources:
  - {{name: web, paths: {paths}, format: jsonl}}
stages:
  dedup: {{buckets: 2}}
"""


def paragraph(word: str) -> str:
    return f"the quick brown fox number {word} jumps over the lazy dog and keeps running far away. " * 6


def write_inputs(folder: Path) -> dict[str, Path]:
    """a.jsonl holds doc `shared`; b.jsonl holds a copy of it (id `z-copy`) and two others."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"a": folder / "a.jsonl", "b": folder / "b.jsonl"}
    files["a"].write_text(json.dumps({"id": "shared", "text": paragraph("one")}) + "\n")
    files["b"].write_text("".join(json.dumps({"id": i, "text": paragraph(t)}) + "\n"
                                  for i, t in [("z-copy", "one"), ("b1", "two"), ("b2", "three")]))
    return files


def release(tmp_path: Path, out: Path, inputs: list[Path]):
    path = tmp_path / "release.yaml"
    path.write_text(CONFIG.format(out=out, paths=json.dumps([str(p) for p in inputs])))
    return load_config(str(path))


def kept_ids(out: Path) -> set[str]:
    return {r[0] for r in stats.connect(str(out)).sql("SELECT id FROM docs_dedup").fetchall()}


def test_second_run_refuses_while_the_first_holds_the_lock(tmp_path, caplog):
    files = write_inputs(tmp_path / "in")
    out = tmp_path / "out"
    cfg = release(tmp_path, out, list(files.values()))
    out.mkdir()
    in_flight = out / "dedup" / ".tmp-abc-part-00000.parquet"  # the first run's half-written file
    in_flight.parent.mkdir()
    in_flight.write_bytes(b"partial")
    first = subprocess.Popen(["sleep", "60"])  # a live process on this host holds the lock
    try:
        (out / "_lock").write_text(json.dumps({"host": __import__("socket").gethostname(), "pid": first.pid,
                                               "started": "2026-11-29T00:00:00+00:00"}))
        with pytest.raises(ReleaseLocked, match=rf"pid {first.pid} on .*rerun with --force"):
            run_release(cfg, progress=False)
        assert in_flight.exists()  # untouched: the first run's file
        assert main(["run", str(tmp_path / "release.yaml"), "--quiet"]) == 1
    finally:
        first.kill()
        first.wait()
    with caplog.at_level(logging.WARNING, logger="pipelines.lock"):  # its pid is dead now: a stale lock
        run_release(cfg, progress=False)
    assert "taking over the release lock" in caplog.text
    assert not (out / "_lock").exists() and not in_flight.exists()
    (out / "_lock").write_text(json.dumps({"host": "another-host", "pid": 1, "started": "x"}))
    with pytest.raises(ReleaseLocked):  # cannot tell whether a run on another host is alive
        run_release(cfg, progress=False)
    run_release(cfg, progress=False, force=True)
    assert not (out / "_lock").exists()


def test_removed_input_leaves_the_release(tmp_path):
    files = write_inputs(tmp_path / "in")
    out = tmp_path / "out"
    run_release(release(tmp_path, out, [files["a"], files["b"]]), progress=False)
    assert "z-copy" not in kept_ids(out) and "shared" in kept_ids(out)
    # b is now the only input (part-00000); part-00001 holds b's old files and must not count
    run_release(release(tmp_path, out, [files["b"]]), progress=False)
    assert kept_ids(out) == {"z-copy", "b1", "b2"}  # not a duplicate of a document no longer in the release
    funnel = stats.funnel(str(out))
    assert funnel["records_read"] == 3 and funnel["adds_up"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert [i["path"] for i in manifest["inputs"]] == [str(files["b"])]
    assert manifest["stale"] and all(p.startswith("_stale/") and "part-00001" in p for p in manifest["stale"])
    assert not any("part-00001" in o["path"] for o in manifest["outputs"])


def test_fewer_buckets_leave_no_stale_shuffle_files(tmp_path):
    """A rerun with `buckets` lowered: the old buckets' files of url_dedup, line_dedup and dedup go to
    _stale/, so stats and the cluster step see what a fresh run with the new count sees."""
    files = write_inputs(tmp_path / "in")

    def run(out: Path, buckets: int):
        stages = "\n  ".join(f"{stage}: {{buckets: {buckets}}}" for stage in ("url_dedup", "line_dedup", "dedup"))
        path = tmp_path / "release.yaml"
        path.write_text(CONFIG.format(out=out, paths=json.dumps([str(p) for p in files.values()]))
                        .replace("dedup: {buckets: 2}", stages))
        run_release(load_config(str(path)), progress=False)
        query = "SELECT stage, metric, sum(value) FROM stats GROUP BY ALL ORDER BY ALL"
        return stats.connect(str(out)).sql(query).fetchall()

    out = tmp_path / "out"
    run(out, 4)
    lowered = run(out, 1)
    assert lowered == run(tmp_path / "fresh", 1)
    manifest = json.loads((out / "manifest.json").read_text())
    assert not any("bucket-00001" in o["path"] for o in manifest["outputs"])
    stale = {p.split("/")[1] for p in manifest["stale"]}
    assert stale == {"url_dedup", "line_dedup", "dedup"}
    assert all("bucket-0000" in p and "bucket-00000" not in p for p in manifest["stale"])


def test_output_named_like_a_glob(tmp_path):
    files = write_inputs(tmp_path / "in")
    a, b = tmp_path / "web[1]", tmp_path / "web[2]"
    for out in (a, b):
        run_release(release(tmp_path, out, [files["a"], files["b"]]), progress=False)
    assert kept_ids(a) == {"shared", "b1", "b2"}  # the copy was found: dedup read both parts' band files
    assert stats.funnel(str(a))["stages"]["dedup"]["rejected"] == 1
    assert main(["stats", str(a)]) == 0
    d = diff(str(a), str(b))
    assert d["outputs_changed"] == 0 and not d["kept"] or all(x == y for _, x, y in d["kept"])


def test_funnel_adds_up_only_when_it_does(tmp_path):
    files = write_inputs(tmp_path / "in")
    out = tmp_path / "out"
    run_release(release(tmp_path, out, [files["a"], files["b"]]), progress=False)
    assert stats.funnel(str(out))["records_read"] == 4
    for f in (out / "read" / "_stats").glob("*.parquet"):  # the reader's counts lost
        f.unlink()
    funnel = stats.funnel(str(out))
    assert funnel["records_read"] == 0 and not funnel["adds_up"]
    assert "DOES NOT ADD UP" in stats.format_funnel(funnel)
