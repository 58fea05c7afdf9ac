"""`gristmill report` (one offline HTML page, checked in headless Chromium) and `gristmill diff` (DuckDB over
two releases' manifests and statistics), on two small releases that differ only in their filter config."""

import base64
import html
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import fsspec
import pytest
import yaml

from pipelines import stats
from pipelines.config import load_config
from pipelines.diff import ReleaseError, diff, format_diff
from pipelines.release import run_release
from pipelines.report import render
from tests.test_release import gristmill, make_config

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def release_config(tmp: Path, out: str, model: Path, extra: str = "") -> str:
    """tests/test_release.py's release, its two WARC files as two sources, plus a PreSelect score (histograms) and a
    CLIMB mixture (weights, clusters)."""
    path = make_config(tmp, out=out, extra=extra)
    cfg = yaml.safe_load(Path(path).read_text())
    # two sources (one WARC file each), so that the report's per-source funnel has something to add up
    [source] = cfg["sources"]
    cfg["sources"] = [dict(source, name=f"crawl-{i}", paths=[source["paths"][0].replace("*", f"SAMPLE-0000{i}")])
                      for i in (0, 1)]
    stages = cfg["stages"]
    stages["score"] = {"preselect": {"model": str(model)}}
    stages["mixture"] = {"budget_tokens": 100000, "strata": ["cluster"], "climb": {"clusters": 4}}
    order = ["extract", "filter", "score", "dedup", "mixture", "tokenize"]
    cfg["stages"] = {name: stages[name] for name in order}
    Path(path).write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def releases(tmp_path_factory, sample_preselect_model):
    """Release A, and release B = A with the FineWeb filter block off (B starts from a copy of A, so only
    the filter and what follows it rerun). One worker runs in-process: no process start-up (~2x faster here)."""
    tmp = tmp_path_factory.mktemp("report")
    one = {"runner.workers": 1}
    a = load_config(release_config(tmp, "a", sample_preselect_model), one)
    run_release(a, progress=False)
    shutil.copytree(a.output, tmp / "b")
    b = load_config(release_config(tmp, "b", sample_preselect_model, extra="    fineweb: {enabled: false}\n"), one)
    run_release(b, progress=False)
    return a.output, b.output


class Page(HTMLParser):
    """Tables (by id) as rows of cell texts, images (alt, src) and headings of a report page."""

    def __init__(self, text: str):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.images: list[tuple[str, str]] = []
        self.image_sizes: list[tuple[str, str]] = []
        self.headings: list[str] = []
        self.tags: list[str] = []
        self.details: list[dict] = []  # <details>: its attributes, summary text and examples' (id, text)
        self._table = self._cell = self._heading = self._summary = self._quote = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == "details":
            self.details.append({"attrs": attrs, "summary": "", "examples": []})
        elif tag == "summary":
            self._summary = ""
        elif tag == "li" and attrs.get("class") == "example" and self.details:
            self.details[-1]["examples"].append([attrs["data-id"], None])
        elif tag == "blockquote":
            self._quote = ""
        if tag == "table":
            self._table = self.tables.setdefault(attrs.get("id", ""), [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th"):
            self._cell = ""
        elif tag in ("h1", "h2"):
            self._heading = ""
        elif tag == "img":
            self.images.append((attrs.get("alt", ""), attrs.get("src", "")))
            self.image_sizes.append((attrs.get("width"), attrs.get("height")))

    def handle_endtag(self, tag):
        if tag == "summary" and self._summary is not None:
            self.details[-1]["summary"] = self._summary
            self._summary = None
        elif tag == "blockquote" and self._quote is not None:
            self.details[-1]["examples"][-1][1] = self._quote
            self._quote = None
        if tag == "table":
            self._table = None
        elif tag in ("td", "th") and self._table is not None:
            self._table[-1].append(self._cell)
            self._cell = None
        elif tag in ("h1", "h2"):
            self.headings.append(self._heading)
            self._heading = None

    def handle_data(self, data):
        if self._summary is not None:
            self._summary += data
        if self._quote is not None:
            self._quote += data
        if self._cell is not None:
            self._cell += data
        if self._heading is not None:
            self._heading += data


def funnel_rows(f: dict) -> list[list[str]]:
    return [[s, str(v["docs_in"]), str(v["docs_out"]), str(v["rejected"]), str(v["errors"])]
            for s, v in f["stages"].items()]


PNG = b"\x89PNG\r\n\x1a\n"
HEADINGS = ["Funnel", "Rejects by reason", "Document length", "Score histograms", "Dedup clusters", "Mixture weights",
            "Clusters", "Tokens"]


def expected_images(out: str) -> list[str]:
    """The charts' alt texts, in page order, for the fixture's releases (two sources, dedup clusters when any)."""
    con = stats.connect(out)
    sources = [s for (s,) in con.execute("SELECT DISTINCT source FROM docs_extract ORDER BY 1").fetchall()]
    dedup = con.execute("SELECT count(*) FROM stats WHERE stage = 'dedup_clusters'").fetchone()[0]
    return (["documents kept per stage", "documents kept per stage and source"]
            + [f"characters per document: {s}" for s in sources] + ["preselect_score"]
            + (["dedup cluster sizes"] if dedup else [])
            + ["weight vs token share", "cluster centroids", "tokens per source", "tokens per document",
               "pieces per document"])


def per_source(out: str) -> dict[tuple[str, str], dict[str, int]]:
    got = stats.connect(out).execute(
        "SELECT source, stage, metric, sum(value)::BIGINT FROM stats WHERE metric IN "
        "('docs_in','docs_out','rejected','errors','upsampled') GROUP BY ALL").fetchall()
    by: dict[tuple[str, str], dict[str, int]] = {}
    for source, stage, metric, value in got:
        by.setdefault((source, stage), {})[metric] = value
    return by


def test_report_content_matches_the_funnel(releases):
    a, _ = releases
    page = Page(render(a))
    f = stats.funnel(a)
    con = stats.connect(a)
    assert f["adds_up"]
    assert page.tables["funnel"] == [["stage", "in", "kept", "rejected", "errors"], *funnel_rows(f)]
    # the share of what the stage received: its input and, at the mixture, the upsampled copies it added
    shares = [str(round(100 * n / (f["stages"][s]["docs_in"] + f["stages"][s].get("upsampled", 0)), 1))
              for s, _, n in f["rejects"]]
    assert page.tables["rejects"] == [["stage", "reason", "documents", "% of stage input"],
                                      *[[s, r, str(n), pct] for (s, r, n), pct in zip(f["rejects"], shares)]]
    assert "fineweb.char_dup_ratio" in {row[1] for row in page.tables["rejects"]}
    assert len(page.tables["clusters"]) == 1 + 4  # header + the 4 k-means clusters
    assert page.headings[1:] == HEADINGS
    assert [alt for alt, _ in page.images] == expected_images(a)
    for (_, src), (width, height) in zip(page.images, page.image_sizes):
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix)
        data = base64.b64decode(src[len(prefix):], validate=True)
        assert data.startswith(PNG) and data[12:16] == b"IHDR"  # its size is what the <img> says
        assert (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")) == (int(width), int(height))

    # the per-source funnel: every number is the stats view's, and it adds up per source
    by = per_source(a)
    sources = sorted({s for s, _ in by})
    assert sources == ["crawl-0", "crawl-1"]
    assert page.tables["funnel_by_source"][1:] == [
        [src, st, *(str(by[(src, st)].get(m, 0)) for m in ("docs_in", "docs_out", "rejected", "errors", "upsampled"))]
        for src in sources for st in f["stages"] if (src, st) in by]
    last = list(f["stages"])[-1]
    balance = page.tables["source_balance"]
    assert balance[0] == ["source", "records read", "upsampled", "kept", "rejected", "errors", "adds up"]
    for row, src in zip(balance[1:], sources, strict=True):
        total = {m: sum(v.get(m, 0) for (s, _), v in by.items() if s == src)
                 for m in ("rejected", "errors", "upsampled")}
        read, kept = by[(src, "read")]["docs_in"], by[(src, last)]["docs_out"]
        assert row == [src, str(read), str(total["upsampled"]), str(kept), str(total["rejected"]), str(total["errors"]),
                       "yes"]
        assert read + total["upsampled"] == kept + total["rejected"] + total["errors"]
        assert read > kept > 0
    # the sources together are the funnel
    assert sum(int(r[1]) for r in balance[1:]) == f["records_read"] and sum(int(r[3]) for r in balance[1:]) == f["kept"]

    # lengths: the documents of each stage and source are the stats' docs_out
    lengths = page.tables["lengths"]
    assert lengths[0] == ["stage", "source", "documents", "characters", "median characters"] and len(lengths) > 2
    for stage, source, n, chars, _ in lengths[1:]:
        assert int(n) == by[(source, stage)]["docs_out"]
        assert int(chars) == con.execute(f"SELECT sum(length(text)) FROM docs_{stage} WHERE source = ?",
                                         [source]).fetchone()[0]

    # tokens: samples, padding, utilization from the samples view; documents = tokenize's kept (copies included)
    summary = dict((k, v) for k, v in page.tables["tokens_summary"][1:])
    samples, tokens, padding = con.execute("SELECT count(*), sum(tokens), sum(padding) FROM samples").fetchone()
    assert (summary["samples"], summary["tokens"], summary["padding"]) == (str(samples), str(tokens), str(padding))
    assert float(summary["utilization"]) == round(tokens / (tokens + padding), 4) and 0 < tokens
    assert int(summary["documents"]) == f["stages"]["tokenize"]["docs_out"]
    assert sum(int(n) for _, n in page.tables["pieces_per_document"][1:]) == int(summary["documents"])
    assert int(summary["tokens"]) == con.execute("SELECT sum(tokens) FROM tokens").fetchone()[0]

    # mixture: the token shares are the tokens view's per stratum, and they add up to 1
    weights = page.tables["mixture_weights"][1:]
    assert [r[0] for r in weights] == ["c000", "c001", "c002", "c003"]
    assert abs(sum(float(r[4]) for r in weights) - 1) < 1e-3 and sum(int(r[3]) for r in weights) == tokens
    # dedup: the size distribution is the stats'
    sizes = dict(con.execute("SELECT metric, sum(value)::BIGINT FROM stats WHERE stage = 'dedup_clusters' "
                             "AND metric LIKE 'cluster_size.%' GROUP BY 1").fetchall())
    assert {f"cluster_size.{k}": int(v) for k, v in page.tables.get("dedup_sizes", [["", ""]])[1:]} == sizes


def test_report_examples_are_rejected_for_their_reason(releases):
    """Each reason's examples are rejects of that stage and reason: the first 3 by md5(id), with their text."""
    a, _ = releases
    page = Page(render(a))
    con = stats.connect(a)
    reasons = [d for d in page.details if d["attrs"].get("class") == "reason"]
    assert [(d["attrs"]["data-stage"], d["attrs"]["data-reason"]) for d in reasons] == \
        [(s, r) for s, r, _ in stats.funnel(a)["rejects"]]
    for d in reasons:
        stage, reason = d["attrs"]["data-stage"], d["attrs"]["data-reason"]
        expected = con.execute("SELECT id, text FROM rejects WHERE stage = ? AND reason = ? ORDER BY md5(id), id "
                               "LIMIT 3", [stage, reason]).fetchall()
        assert [i for i, _ in d["examples"]] == [i for i, _ in expected], (stage, reason)
        for (_, shown), (_, text) in zip(d["examples"], expected):
            if text is None:
                continue
            head = shown.split(" … [", 1)[0]
            assert text.startswith(head) and len(head) == min(len(text), 300)
    # dedup's largest clusters: the removed example is a duplicate of the kept one
    clusters = [d for d in page.details if d["attrs"].get("class") == "dedup-cluster"]
    for d in clusters:
        keeper, removed = [i for i, _ in d["examples"]]
        assert d["attrs"]["data-id"] == keeper
        assert con.execute("SELECT count(*) FROM rejects WHERE stage = 'dedup' AND id = ? AND duplicate_of = ?",
                           [removed, keeper]).fetchone()[0] == 1
    # the mixture's examples are documents of their cluster
    for d in (d for d in page.details if d["attrs"].get("class") == "cluster"):
        ids = [i for i, _ in d["examples"]]
        assert 0 < len(ids) <= 2
        assert con.execute("SELECT count(*) FROM clusters WHERE cluster = ? AND list_has_all(examples, ?)",
                           [int(d["attrs"]["data-cluster"]), ids]).fetchone()[0] == 1


EVIL = "<script>alert('x')</script><img src=x onerror=alert(1)>\"'&"


def test_report_escapes_what_comes_from_documents(releases, tmp_path):
    """A reject whose text, url, detail and reason hold markup: it shows as text, nothing of it runs."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.documents import REJECT_SCHEMA

    a, _ = releases
    copy = tmp_path / "evil"
    shutil.copytree(a, copy)
    row = {"id": "evil-1", "source": "crawl-0", "url": f"https://x.test/{EVIL}", "input_file": "f", "input_offset": 0,
           "stage": "filter", "reason": f"evil.{EVIL}", "detail": EVIL, "duplicate_of": None,
           "text": EVIL + " and more" * 100}
    pq.write_table(pa.Table.from_pylist([row], schema=REJECT_SCHEMA), copy / "filter" / "_rejects" / "part-99.parquet")
    text = render(str(copy))
    assert "<script" not in text.lower() and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&lt;img" in text
    page = Page(text)
    assert set(page.tags) <= {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "table", "thead",
                              "tbody", "tr", "th", "td", "figure", "img", "details", "summary", "ul", "li", "code",
                              "span", "b", "i", "blockquote"}
    assert len(page.images) == len(expected_images(a))  # no <img> came from the document
    [evil] = [d for d in page.details if d["attrs"].get("data-reason") == f"evil.{EVIL}"]
    assert evil["attrs"]["data-stage"] == "filter" and f"evil.{EVIL}" in evil["summary"]
    [(doc_id, shown)] = evil["examples"]
    assert doc_id == "evil-1" and shown.startswith(EVIL + " and more") and shown.endswith("more characters]")
    assert len(shown.split(" … [", 1)[0]) == 300
    assert ["filter", f"evil.{EVIL}", "1"] in [r[:3] for r in page.tables["rejects"]]


def test_report_is_the_same_on_every_run(releases):
    a, _ = releases
    assert render(a) == render(a)


# Appended to a copy of the page: once it has loaded, every image is drawn on a canvas and its pixels read
# back (a drawImage/getImageData on an image that did not decode throws or gives transparent pixels), and the
# tables are read from the rendered DOM; the result lands in <pre id="gristmill-check"> for --dump-dom.
CHECK = """<script>
window.addEventListener('load', () => {
  const images = [...document.images].map((img) => {
    const box = img.getBoundingClientRect();
    const info = {alt: img.alt, complete: img.complete, width: img.naturalWidth, height: img.naturalHeight,
                  shown: [Math.round(box.width), Math.round(box.height)], pixels: 0, opaque: 0, ink: 0};
    try {
      const canvas = document.createElement('canvas');
      canvas.width = img.naturalWidth;
      canvas.height = img.naturalHeight;
      const ctx = canvas.getContext('2d');
      ctx.drawImage(img, 0, 0);
      const px = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
      info.pixels = px.length / 4;
      for (let i = 0; i < px.length; i += 4) {
        if (px[i + 3] === 255) info.opaque++;
        if (px[i] + px[i + 1] + px[i + 2] < 600) info.ink++;
      }
    } catch (e) { info.error = String(e); }
    return info;
  });
  const tables = {};
  for (const t of document.querySelectorAll('table'))
    tables[t.id] = [...t.rows].map((r) => [...r.cells].map((c) => c.innerText));
  const resources = performance.getEntriesByType('resource').map((e) => e.name);
  const pre = document.createElement('pre');
  pre.id = 'gristmill-check';
  pre.textContent = JSON.stringify({title: document.title, url: location.href, images, tables, resources,
                                    headings: [...document.querySelectorAll('h1, h2')].map((h) => h.innerText)});
  document.body.appendChild(pre);
});
</script>"""


def browse(page: Path, tmp: Path) -> dict:
    """Opens `page` (with CHECK appended) in headless Chromium and returns what the check saw."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"chromium is not installed ({CHROMIUM}; Debian: apt-get install -y chromium): "
                    "the report is not checked in a browser")
    text = page.read_text()
    assert text.count("</body>") == 1
    checked = tmp / f"checked-{page.name}"
    checked.write_text(text.replace("</body>", CHECK + "</body>"))
    profile = tmp / "chromium-profile"
    profile.mkdir(exist_ok=True)
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--dump-dom", checked.as_uri()]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail(f"chromium did not finish in 90 s: {' '.join(cmd)}")
    found = re.search(r'<pre id="gristmill-check">(.*?)</pre>', done.stdout, re.S)
    assert done.returncode == 0 and found, \
        f"chromium exit {done.returncode}, no check result\n" \
        f"stdout: {done.stdout[-2000:]}\nstderr: {done.stderr[-3000:]}"
    return json.loads(html.unescape(found.group(1)))


def image_ok(image: dict) -> bool:
    """Decoded: drawn pixel for pixel, all opaque (matplotlib's PNGs have a white background), some ink."""
    return ("error" not in image and image["complete"] and image["width"] > 0 and image["height"] > 0
            and image["pixels"] == image["width"] * image["height"] == image["opaque"] and image["ink"] > 0
            and image["shown"][0] > 0 and image["shown"][1] > 0)


def test_report_opens_in_chromium(releases, tmp_path):
    a, _ = releases
    target = tmp_path / "report.html"
    written = gristmill("report", a, "--html", str(target))
    assert written.returncode == 0, written.stderr
    assert written.stdout.strip() == str(target)
    seen = browse(target, tmp_path)
    f = stats.funnel(a)
    assert seen["url"].startswith("file://") and seen["title"] == f"gristmill report: {a}"
    assert seen["headings"][0] == f"Release report: {a}"
    assert {"funnel", "rejects", "clusters", "funnel_by_source", "source_balance", "lengths", "tokens_summary",
            "mixture_weights"} <= set(seen["tables"])
    assert seen["headings"][1:] == HEADINGS
    assert seen["tables"]["funnel"] == [["stage", "in", "kept", "rejected", "errors"], *funnel_rows(f)]
    assert [row[:3] for row in seen["tables"]["rejects"][1:]] == [[s, r, str(n)] for s, r, n in f["rejects"]]
    balance = seen["tables"]["source_balance"][1:]
    assert len(balance) == 2 and all(row[-1] == "yes" for row in balance)
    # the rendered tables are what was written (but score_hist, in a closed <details>: not rendered, no innerText)
    written = {k: v for k, v in Page(target.read_text()).tables.items() if k != "score_hist"}
    assert {k: v for k, v in seen["tables"].items() if k != "score_hist"} == written
    assert [i["alt"] for i in seen["images"]] == expected_images(a)
    assert all(image_ok(i) for i in seen["images"]), seen["images"]
    # offline: nothing was fetched (data: URIs only)
    assert all(name.startswith("data:") for name in seen["resources"]), seen["resources"]


def test_browser_check_catches_images_that_do_not_decode(releases, tmp_path):
    a, _ = releases
    src = Page(render(a)).images[0][1]
    png = base64.b64decode(src.split(",", 1)[1])
    truncated = base64.b64encode(png[: len(png) // 2]).decode()
    garbage = base64.b64encode(b"not a png at all" * 50).decode()
    page = tmp_path / "broken.html"
    page.write_text(f"<!doctype html><html><head><title>t</title></head><body><table id='t'><tr><td>1</td></tr>"
                    f"</table><img alt='good' src='{src}'><img alt='truncated' src='data:image/png;base64,{truncated}'>"
                    f"<img alt='garbage' src='data:image/png;base64,{garbage}'></body></html>")
    seen = browse(page, tmp_path)
    assert seen["tables"] == {"t": [["1"]]}
    assert {i["alt"]: image_ok(i) for i in seen["images"]} == {"good": True, "truncated": False, "garbage": False}


def expected_rejects(fa: dict, fb: dict) -> list[tuple]:
    """(stage, reason, A, B) from both funnels: 0 where the release ran the stage, None where it did not."""
    ra = {(s, r): n for s, r, n in fa["rejects"]}
    rb = {(s, r): n for s, r, n in fb["rejects"]}
    rank = {s: i for i, s in enumerate(stats.STAGE_ORDER)}
    return [(s, r, ra.get((s, r), 0 if s in fa["stages"] else None), rb.get((s, r), 0 if s in fb["stages"] else None))
            for s, r in sorted(set(ra) | set(rb), key=lambda k: (rank.get(k[0], 99), k))]


def test_diff_between_two_releases(releases):
    a, b = releases
    fa, fb = stats.funnel(a), stats.funnel(b)
    d = diff(a, b)
    assert d["config"] == [("stages.filter.fineweb.enabled", "true", "false")]
    assert d["inputs_added"] == d["inputs_removed"] == []
    assert d["kept"] == [(s, fa["stages"][s]["docs_out"], fb["stages"][s]["docs_out"]) for s in fa["stages"]]
    assert dict((s, (x, y)) for s, x, y in d["kept"])["filter"][1] > fa["stages"]["filter"]["docs_out"]
    assert d["rejects"] == expected_rejects(fa, fb)
    fineweb = {(r, x, y) for s, r, x, y in d["rejects"] if r.startswith("fineweb.")}
    assert fineweb and all(x > 0 and y == 0 for _, x, y in fineweb)

    def tokens(out):
        return dict(stats.connect(out).execute("SELECT source, sum(tokens) FROM tokens GROUP BY 1").fetchall())

    ta, tb = tokens(a), tokens(b)
    assert d["tokens"] == [(s, ta[s], tb[s]) for s in sorted(ta)] and ta != tb

    def outputs(out):
        return {o["path"]: o["sha256"] for o in json.loads((Path(out) / "manifest.json").read_text())["outputs"]}

    oa, ob = outputs(a), outputs(b)
    assert (d["outputs_same"], d["outputs_changed"], d["outputs_added"], d["outputs_removed"]) == (
        sum(oa[p] == ob[p] for p in oa.keys() & ob.keys()), sum(oa[p] != ob[p] for p in oa.keys() & ob.keys()),
        len(ob.keys() - oa.keys()), len(oa.keys() - ob.keys()))
    by_dir = {row[0]: row[1:] for row in d["outputs_by_dir"]}
    assert by_dir["extract"][1:] == (0, 0, 0) and by_dir["extract"][0] > 0  # extract was reused, byte for byte
    assert by_dir["filter"][1] > 0
    assert sum(r[0] for r in by_dir.values()) == d["outputs_same"]

    # the CLI: readable tables with the same numbers, and the same dict as JSON
    shown = gristmill("diff", a, b)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.rstrip("\n") == format_diff(d)
    lines = shown.stdout.splitlines()
    assert re.search(r"^  stages\.filter\.fineweb\.enabled\s+true\s+false$", shown.stdout, re.M)
    kept = lines.index("documents kept per stage:")
    for stage, x, y in d["kept"]:
        row = next(line for line in lines[kept + 2:] if line.split()[:1] == [stage])
        assert row.split()[1:3] == [str(x), str(y)]
    filter_row = next(line for line in lines[kept + 2:] if line.split()[:1] == ["filter"])
    assert filter_row.endswith(f"+{fb['stages']['filter']['docs_out'] - fa['stages']['filter']['docs_out']}")
    as_json = gristmill("diff", a, b, "--json")
    assert as_json.returncode == 0 and json.loads(as_json.stdout) == json.loads(json.dumps(d))


def test_diff_of_a_release_with_itself_and_over_fsspec(releases):
    a, _ = releases
    same = diff(a, a)
    assert same["config"] == same["inputs_added"] == same["inputs_removed"] == []
    assert same["outputs_changed"] == same["outputs_added"] == same["outputs_removed"] == 0
    assert all(x == y for _, x, y in same["kept"]) and all(x == y for *_, x, y in same["rejects"])
    # a copy on an object store (memory:// stands in for s3://), with one input and one output swapped
    fs = fsspec.filesystem("memory")
    fs.put(a, "/bucket/copy", recursive=True)
    manifest = json.loads(fs.cat("/bucket/copy/manifest.json"))
    dropped_input = manifest["inputs"].pop()["path"]
    manifest["inputs"].append({"path": "s3://crawl/new.warc.gz", "bytes": 1, "part": "part-00002", "source": "crawl"})
    dropped_output = manifest["outputs"].pop(0)["path"]
    manifest["outputs"].append({"path": "extra/file.txt", "sha256": "0" * 64, "bytes": 1})
    fs.pipe("/bucket/copy/manifest.json", json.dumps(manifest).encode())
    try:
        d = diff(a, "memory://bucket/copy")
    finally:
        fs.rm("/bucket/copy", recursive=True)
    assert d["inputs_added"] == ["s3://crawl/new.warc.gz"] and d["inputs_removed"] == [dropped_input]
    assert (d["outputs_changed"], d["outputs_added"], d["outputs_removed"]) == (0, 1, 1)
    assert d["outputs_same"] == same["outputs_same"] - 1 and dropped_output
    assert d["kept"] == same["kept"] and d["rejects"] == same["rejects"] and d["tokens"] == same["tokens"]


def test_diff_and_report_name_what_is_missing(releases, tmp_path):
    a, _ = releases
    missing = tmp_path / "nothing"
    with pytest.raises(ReleaseError, match=re.escape(f"{missing}/manifest.json")):
        diff(a, str(missing))
    done = gristmill("diff", str(missing), a)
    assert done.returncode == 1 and f"{missing}/manifest.json" in done.stderr and "Traceback" not in done.stderr
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "manifest.json").write_text("{not json")
    done = gristmill("diff", a, str(tmp_path / "broken"))
    assert done.returncode == 1 and "broken/manifest.json" in done.stderr and "Traceback" not in done.stderr
    done = gristmill("report", str(missing))
    assert done.returncode == 1 and "no release statistics found" in done.stderr and "Traceback" not in done.stderr
