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
    """tests/test_release.py's release plus a PreSelect score (histograms) and a CLIMB mixture (weights, clusters)."""
    path = make_config(tmp, out=out, extra=extra)
    cfg = yaml.safe_load(Path(path).read_text())
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
        self.headings: list[str] = []
        self._table = self._cell = self._heading = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
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

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag in ("td", "th") and self._table is not None:
            self._table[-1].append(self._cell)
            self._cell = None
        elif tag in ("h1", "h2"):
            self.headings.append(self._heading)
            self._heading = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data
        if self._heading is not None:
            self._heading += data


def funnel_rows(f: dict) -> list[list[str]]:
    return [[s, str(v["docs_in"]), str(v["docs_out"]), str(v["rejected"]), str(v["errors"])]
            for s, v in f["stages"].items()]


def test_report_content_matches_the_funnel(releases):
    a, _ = releases
    page = Page(render(a))
    f = stats.funnel(a)
    assert f["adds_up"]
    assert page.tables["funnel"] == [["stage", "in", "kept", "rejected", "errors"], *funnel_rows(f)]
    assert page.tables["rejects"] == [["stage", "reason", "documents"],
                                      *[[s, r, str(n)] for s, r, n in f["rejects"]]]
    assert "fineweb.char_dup_ratio" in {row[1] for row in page.tables["rejects"]}
    assert len(page.tables["clusters"]) == 1 + 4  # header + the 4 k-means clusters
    assert page.headings[1:] == ["Funnel", "Rejects by reason", "Score histograms", "Mixture weights", "Clusters",
                                 "Tokens"]
    assert [alt for alt, _ in page.images] == ["preselect_score", "weight per cluster", "tokens per source"]
    for _, src in page.images:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix) and base64.b64decode(src[len(prefix):]).startswith(b"\x89PNG\r\n\x1a\n")


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
    assert {"funnel", "rejects", "clusters"} <= set(seen["tables"])
    assert seen["tables"]["funnel"] == [["stage", "in", "kept", "rejected", "errors"], *funnel_rows(f)]
    assert seen["tables"]["rejects"][1:] == [[s, r, str(n)] for s, r, n in f["rejects"]]
    assert [i["alt"] for i in seen["images"]] == ["preselect_score", "weight per cluster", "tokens per source"]
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
