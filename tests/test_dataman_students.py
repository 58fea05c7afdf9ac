"""DataMan end to end: a teacher on loopback rates the embedded sample, students learn its labels and
rate a release, selection by rating and domain."""

import json

import pytest

from pipelines import stats
from pipelines.cli import main
from pipelines.config import ConfigError, load_config
from pipelines.dataman_build import build, load_spec
from pipelines.release import run_release
from scorers.dataman import RATINGS
from tests.conftest import SAMPLE
from tests.test_dataman_teacher import Server


def judge(text: str) -> dict:
    """The 'LLM': simple, learnable rules about what the page is."""
    low = text.lower()
    domain = "law" if "copyright" in low and "license" in low else "coding" if "postgresql" in low else "technology"
    overall = 5 if domain == "coding" else 2 if domain == "law" else 3
    return {**{r: 3 for r in RATINGS}, "overall_score": overall, "accuracy": overall, "domain": domain}


def judged_spec(tmp, max_docs: int, teacher: str, students: str):
    """A loopback teacher that answers like `judge`, and a build spec using it (students: epoch, ...)."""
    server = Server()
    server.respond = lambda n, body: (200, json.dumps(judge(body["messages"][1]["content"])), 0)
    spec = tmp / "spec.yaml"
    spec.write_text(f"""
sample: {{name: s, paths: ["{SAMPLE}/*.warc.gz"], format: warc}}
max_docs: {max_docs}
teacher: {{endpoint: "{server.url}", model: judge, {teacher}}}
students: {{epoch: {students}}}
output: {tmp / 'students'}
""")
    return server, spec


@pytest.fixture(scope="module")
def students(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dataman")
    server, spec = judged_spec(tmp, 240, f"max_concurrency: 8, cache_path: {tmp / 'cache.sqlite'}", "25, bucket: 20000")
    report = build(load_spec(str(spec)))
    server.httpd.shutdown()
    return tmp / "students", report


def test_students_learn_the_teacher(students):
    folder, report = students
    assert report["documents"]["rated"] == 240 and report["documents"]["failed"] == 0
    for name in ("overall_score", "domain"):
        r = report[name]
        assert r["held_out_accuracy"] > r["majority_class"] + 0.1, (name, r)
    assert (folder / "labels.parquet").exists() and (folder / "report.json").exists()


def test_score_stage_rates_and_selects_by_domain(students, tmp_path):
    folder, _ = students
    config = tmp_path / "r.yaml"
    config.write_text(f"""
release: r
output: {tmp_path / 'out'}
sources: [{{name: crawl, paths: ["{SAMPLE}/*.warc.gz"], format: warc}}]
stages:
  extract: {{}}
  score:
    dataman: {{models: {folder}}}
  select: [{{column: domain, values: [coding, technology]}}, {{column: dataman_overall, min: 3}}]
""")
    cfg = load_config(str(config))
    run_release(cfg, progress=False)
    con = stats.connect(cfg.output)
    kept = con.execute("SELECT domain, dataman_overall, count(*) FROM docs_select GROUP BY ALL").fetchall()
    assert kept and all(d in ("coding", "technology") and o >= 3 for d, o, _ in kept)
    reasons = dict(con.execute("SELECT reason, count(*) FROM rejects GROUP BY 1").fetchall())
    assert reasons.get("select.domain", 0) > 50  # the copyright pages
    assert stats.funnel(cfg.output)["adds_up"]
    histogram = dict(con.execute("SELECT metric, sum(value) FROM stats WHERE metric LIKE 'hist.domain.%' "
                                 "GROUP BY 1").fetchall())
    assert sum(histogram.values()) == con.execute("SELECT sum(value) FROM stats WHERE stage = 'score' "
                                                  "AND metric = 'docs_in'").fetchone()[0]


def test_missing_students_are_a_config_error(tmp_path):
    config = tmp_path / "r.yaml"
    config.write_text(f"""
release: r
output: {tmp_path / 'out'}
sources: [{{name: crawl, paths: ["{SAMPLE}/*.warc.gz"], format: warc}}]
stages: {{extract: {{}}, score: {{dataman: {{models: {tmp_path / 'none'}}}}}}}
""")
    with pytest.raises(ConfigError, match=r"stages\.score\.dataman\.models: .*student models missing"):
        load_config(str(config))


def test_cli_build_prints_the_summary(tmp_path, capsys):
    """`gristmill dataman build SPEC` end to end against the loopback teacher: exit 0 and the summary."""
    server, spec = judged_spec(tmp_path, 20, "", "2, bucket: 1000")
    try:
        assert main(["dataman", "build", str(spec)]) == 0
    finally:
        server.httpd.shutdown()
    out = capsys.readouterr().out
    assert f"DataMan students written to {tmp_path / 'students'}: 20 rated, 0 failed, 4 held out" in out
    assert "languages: en" in out
    for name in RATINGS + ("domain",):
        assert f"  {name:<28} held-out accuracy " in out
    assert (tmp_path / "students" / "domain.bin").exists()
