"""url_dedup: documents with the same normalised URL, one kept by a rule, the same bytes on any number
of workers, with clear config errors. Small JSONL releases, run in-process."""

import json
import re
from pathlib import Path

import pytest

from pipelines import stats
from pipelines.config import ConfigError, load_config
from pipelines.release import run_release
from pipelines.url_dedup.tasks import MAX_DETAIL_CHARS, TrackingParams, normalise_url, timestamp
from tests.test_release import tree


@pytest.mark.parametrize(("url", "expected"), [
    ("HTTPS://Example.COM:443/a/?utm_source=x&b=2&a=1#frag", "//example.com/a?a=1&b=2"),
    ("http://example.com", "//example.com"),
    ("https://example.com/", "//example.com"),  # the root is the empty path
    ("http://example.com:80/a//", "//example.com/a"),
    ("http://example.com:443/", "//example.com:443"),  # not http's default port
    ("https://example.com:8443/x", "//example.com:8443/x"),
    ("http://u:p@Ex.com/?fbclid=1&gclid=2", "//u:p@ex.com"),
    ("http://[::1]:80/x", "//[::1]/x"),
    ("http://ex.com/a?UTM_Medium=1&ref=2&q=%20&a=", "//ex.com/a?a=&q=%20"),  # names case-insensitive, values as is
    ("http://ex.com/Path?b=1&&a=2#", "//ex.com/Path?a=2&b=1"),  # path case kept
    ("ftp://Host:80/f/", "ftp://host:80/f"),  # other schemes keep their scheme and ports
    ("http://[::1", "http://[::1"),  # does not parse: its own key
    ("  ", None),
    (None, None),
])
def test_normalise_url(url, expected):
    assert normalise_url(url) == expected


def test_normalise_url_options():
    assert normalise_url("https://a.com/x", ignore_scheme=False) == "https://a.com/x"
    assert normalise_url("HTTP://a.com:80/x", ignore_scheme=False) == "http://a.com/x"
    tracking = TrackingParams(["sid", "x_*"])
    assert normalise_url("http://a.com/?utm_a=1&SID=2&x_y=3&xy=4", tracking=tracking) == "//a.com?utm_a=1&xy=4"
    assert timestamp("2024-01-02T03:04:05Z") == timestamp("2024-01-02T04:04:05+01:00") > timestamp("2024-01-02")
    assert timestamp("yesterday") is None and timestamp(None) is None


TEXT = "Some words of a page. " * 4


def doc(i: str, url: str | None, date: str | None = None, text: str = TEXT) -> dict:
    return {"id": i, "url": url, "date": date, "text": text}


# Three pages; a.jsonl and b.jsonl are two input shards, so groups span parts.
A = [
    doc("p1-old", "http://Site.com/page/?utm_source=mail", "2024-01-01T00:00:00Z", TEXT * 3),
    doc("p2-a", "https://other.org/x?b=2&a=1", "2024-03-01T00:00:00Z"),
    doc("nourl-1", None),
    doc("p3-nodate", "http://third.net/", None, TEXT * 5),
]
B = [
    doc("p1-new", "https://site.com/page#top", "2024-02-01T00:00:00Z"),
    doc("p1-mid", "http://site.com:80/page", "2024-01-15T00:00:00Z", TEXT * 9),
    doc("p2-b", "http://other.org/x?a=1&b=2&fbclid=z", "2024-03-01T00:00:00Z"),  # same date as p2-a: id decides
    doc("nourl-2", ""),
    doc("p3-dated", "https://THIRD.net", "2020-01-01T00:00:00Z"),  # any date beats a missing one
    doc("solo", "http://solo.com/?ref=x", "2024-01-01T00:00:00Z"),
]


def release(tmp_path: Path, url_dedup: str = "{buckets: 2}", name: str = "out", workers: int = 1,
            more: str = "", extra: tuple[list, list] = ([], [])) -> str:
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    paths = []
    for part, docs in [("a", A + extra[0]), ("b", B + extra[1])]:
        path = folder / f"{part}.jsonl"
        path.write_text("".join(json.dumps(d) + "\n" for d in docs))
        paths.append(str(path))
    config = tmp_path / f"{name}.yaml"
    config.write_text(f"""
release: t
output: "{tmp_path / name}"
runner: {{kind: local, workers: {workers}}}
sources:
  - {{name: web, paths: {json.dumps(paths)}, format: jsonl}}
stages:
  url_dedup: {url_dedup}
{more}""")
    return str(config)


def run(config: str) -> tuple[set, dict, str]:
    cfg = load_config(config)
    run_release(cfg, progress=False)
    con = stats.connect(cfg.output)
    kept = {i for (i,) in con.execute("SELECT id FROM docs_url_dedup").fetchall()}
    removed = {i: (reason, detail, dup) for i, reason, detail, dup in con.execute(
        "SELECT id, reason, detail, duplicate_of FROM rejects WHERE stage = 'url_dedup'").fetchall()}
    assert stats.funnel(cfg.output)["adds_up"]
    return kept, removed, cfg.output


def test_keep_newest_by_default(tmp_path):
    kept, removed, out = run(release(tmp_path))
    assert kept == {"p1-new", "p2-a", "p3-dated", "solo", "nourl-1", "nourl-2"}
    assert removed == {
        "p1-old": ("duplicate_url", "//site.com/page", "p1-new"),
        "p1-mid": ("duplicate_url", "//site.com/page", "p1-new"),
        "p2-b": ("duplicate_url", "//other.org/x?a=1&b=2", "p2-a"),
        "p3-nodate": ("duplicate_url", "//third.net", "p3-dated"),
    }
    con = stats.connect(out)
    metrics = dict(con.execute("SELECT metric, sum(value) FROM stats WHERE stage = 'url_dedup' GROUP BY ALL")
                   .fetchall())
    assert metrics["no_url"] == 2 and metrics["rejected"] == 4 and metrics["docs_in"] == 10
    groups = dict(con.execute("SELECT metric, sum(value) FROM stats WHERE stage = 'url_dedup_groups' GROUP BY ALL")
                  .fetchall())
    assert groups["urls"] == 4 and groups["duplicated_urls"] == 3 and groups["duplicates"] == 4
    # the rejects keep the document's own URL and text
    row = con.execute("SELECT url, length(text) FROM rejects WHERE id = 'p1-mid'").fetchone()
    assert row == ("http://site.com:80/page", len(TEXT * 9))


def test_keep_rules_rerun_only_the_reduce_and_apply(tmp_path):
    for keep, keepers in [("longest", {"p1-mid", "p2-a", "p3-nodate"}),  # p2: same length, smallest id
                          ("first_id", {"p1-mid", "p2-a", "p3-dated"})]:
        kept, removed, out = run(release(tmp_path, f"{{keep: {keep}, buckets: 2}}"))
        assert kept == keepers | {"solo", "nourl-1", "nourl-2"}
        assert {dup for _, _, dup in removed.values()} == keepers
        assert all(reason == "duplicate_url" for reason, _, _ in removed.values())
    log = json.loads(max(Path(out, "_logs").glob("run-*.json")).read_text())
    assert [r["part"] for r in log["reports"] if r["skipped"]] == ["part-00000", "part-00001"]  # the maps


def test_scheme_and_tracking_params_configurable(tmp_path):
    kept, removed, _ = run(release(tmp_path, "{ignore_scheme: false, tracking_params: ['utm_*'], buckets: 3}"))
    # http and https now differ (p2, p3, p1-new); utm_source is still dropped
    assert removed == {"p1-old": ("duplicate_url", "http://site.com/page", "p1-mid")}
    assert len(kept) == 9


def test_long_url_detail_is_its_hash(tmp_path):
    long_url = "http://a.com/" + "x" * MAX_DETAIL_CHARS
    _, removed, _ = run(release(tmp_path, extra=([doc("long-1", long_url, "2024-01-01")],
                                                 [doc("long-2", long_url + "/", "2023-01-01")])))
    reason, detail, dup = removed["long-2"]
    assert reason == "duplicate_url" and dup == "long-1" and detail.startswith("sha256:") and len(detail) == 71


def test_same_bytes_with_one_or_two_workers_and_before_dedup(tmp_path):
    more = "  dedup: {buckets: 2}\n"
    one = run(release(tmp_path, "{buckets: 3}", "one", workers=1, more=more))[2]
    two = run(release(tmp_path, "{buckets: 3}", "two", workers=2, more=more))[2]
    assert tree(Path(one)) == tree(Path(two))
    f = stats.funnel(one)
    assert list(f["stages"]) == ["read", "url_dedup", "dedup"]
    assert f["stages"]["dedup"]["docs_in"] == f["stages"]["url_dedup"]["docs_out"] == 6


@pytest.mark.parametrize(("block", "key", "message"), [
    ("{keep: oldest}", "stages.url_dedup.keep", "'newest', 'longest' or 'first_id'"),
    ("{tracking_params: [utm_*, 'a*b']}", "stages.url_dedup.tracking_params", "[1] 'a*b' is not"),
    ("{tracking_params: ['a=b']}", "stages.url_dedup.tracking_params", "[0] 'a=b' is not"),
    ("{buckets: 0}", "stages.url_dedup.buckets", "greater than or equal to 1"),
])
def test_config_errors_name_the_key(tmp_path, block, key, message):
    with pytest.raises(ConfigError, match=re.escape(key) + ": .*" + re.escape(message)):
        load_config(release(tmp_path, block))
