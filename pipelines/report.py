"""`gristmill report OUT`: one offline HTML page.

Sections, in order: the funnel (table and charts, overall and per source, with the per-source check that
records read + upsampled copies = kept + rejected + errors), rejects by reason (count, share of the stage's
input, and 3 examples per reason in a collapsible <details>), errors, document length histograms (characters,
per stage and source), then each stage's own sections (score histograms per source and domain, dedup
clusters, the mixture's clusters with weights, token shares and a 2-D map, tokens), and the ablation when
`gristmill ablate` wrote OUT/ablation.json. Plots are PNGs embedded as base64, so the file opens anywhere.

Size: every number is an aggregate computed in DuckDB, every chart a fixed number of bins and at most
report_parts.MAX_SERIES series, and document text appears only in capped examples (3 per reason, at most
EXAMPLE_CHARS characters each). So the page grows with the number of stages, reasons and (capped) clusters,
not with the documents: a few hundred kB for the sample, a few MB at most for a million documents.
Text from documents is escaped (see report_parts): nothing from a document can run in the page.
"""

import html

from pipelines import ablate, stats
from pipelines.registry import STAGES
from pipelines.report_parts import (
    MAX_SERIES,
    clip,
    esc,
    example,
    grouped_bars,
    input_view,
    log2_label,
    table,
    texts,
    top_series,
    views,
)

EXAMPLES_PER_REASON = 3


def render(output: str) -> str:
    f = stats.funnel(output)
    con = stats.connect(output)
    parts = [f"<h1>Release report: {html.escape(output)}</h1>"]
    parts += funnel_section(con, f)
    parts += rejects_section(con, f)
    if f["errors"]:
        parts += ["<h2>Errors</h2>", table(["stage", "file", "error", "records"], f["errors"], "errors")]
    parts += lengths_section(con)
    for stage in STAGES:  # each stage's own sections, in pipeline order
        if stage.report is not None:
            parts += stage.report(con, output)
    parts += ablate.report_section(output)  # `gristmill ablate OUT` wrote OUT/ablation.json
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 6px}td.num{text-align:right}"
             "figure{margin:1em 0}img{max-width:100%;height:auto}"
             "blockquote{white-space:pre-wrap;font-size:small;background:#f6f6f6;margin:4px 0 8px 1em;padding:4px}"
             "details{margin:2px 0}summary{cursor:pointer}.detail{color:#666}")
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>gristmill report: {html.escape(output)}</title><style>{style}</style>"
            f"</head><body>{''.join(parts)}</body></html>\n")


# --- funnel ---------------------------------------------------------------------------------------------

def source_funnel(con, f: dict) -> tuple[list[tuple], list[tuple]]:
    """(rows per source and stage: source, stage, in, kept, rejected, errors, upsampled;
    the check per source: source, records read, upsampled, kept, rejected, errors, adds up), from `stats`."""
    got = con.execute(
        "SELECT coalesce(source, '(none)'), stage, metric, sum(value) FROM stats "
        "WHERE metric IN ('docs_in','docs_out','rejected','errors','upsampled') GROUP BY ALL").fetchall()
    by: dict[tuple[str, str], dict[str, int]] = {}
    for source, stage, metric, value in got:
        by.setdefault((source, stage), {})[metric] = int(value)
    order = list(f["stages"])
    sources = sorted({s for s, _ in by})
    rows, checks = [], []
    for source in sources:
        present = [st for st in order if (source, st) in by]
        for st in present:
            v = by[(source, st)]
            rows.append((source, st, v.get("docs_in", 0), v.get("docs_out", 0), v.get("rejected", 0),
                         v.get("errors", 0), v.get("upsampled", 0)))
        read = by.get((source, "read"), {}).get("docs_in", 0)
        kept = by[(source, order[-1])].get("docs_out", 0) if (source, order[-1]) in by else 0
        lost = [sum(by[(source, st)].get(m, 0) for st in present) for m in ("rejected", "errors", "upsampled")]
        balanced = all(v.get("docs_in", 0) + v.get("upsampled", 0)
                       == v.get("docs_out", 0) + v.get("rejected", 0) + v.get("errors", 0)
                       for (s, _), v in by.items() if s == source)
        ok = balanced and read + lost[2] == kept + lost[0] + lost[1]
        checks.append((source, read, lost[2], kept, lost[0], lost[1], "yes" if ok else "NO"))
    return rows, checks


def funnel_section(con, f: dict) -> list[str]:
    stages = f["stages"]
    out = ["<h2>Funnel</h2>",
           table(["stage", "in", "kept", "rejected", "errors"],
                 [(s, v["docs_in"], v["docs_out"], v["rejected"], v["errors"]) for s, v in stages.items()],
                 "funnel"),
           f"<p>records read {f['records_read']}, upsampled copies {f['upsampled']}, kept {f['kept']}: "
           f"{'adds up' if f['adds_up'] else 'DOES NOT ADD UP'}</p>"]
    if stages:
        out.append(grouped_bars(list(stages), {"kept": [v["docs_out"] for v in stages.values()]},
                                "documents kept per stage", ylabel="documents", horizontal=True))
    rows, checks = source_funnel(con, f)
    if rows:
        labels, series = top_series([(src, st, kept) for src, st, _, kept, *_ in rows], list(stages))
        out += ["<h3>Per source</h3>",
                grouped_bars(labels, series, "documents kept per stage and source", ylabel="documents",
                             horizontal=True),
                table(["source", "stage", "in", "kept", "rejected", "errors", "upsampled"], rows, "funnel_by_source"),
                "<p>Per source: records read + upsampled copies = kept (after the last stage) + rejected + errors "
                "(over all stages).</p>",
                table(["source", "records read", "upsampled", "kept", "rejected", "errors", "adds up"], checks,
                      "source_balance")]
    return out


# --- rejects --------------------------------------------------------------------------------------------

def reject_examples(con, reasons: list[tuple]) -> dict[tuple[str, str], list[tuple]]:
    """{(stage, reason): [(id, url, detail, text, note)]}: EXAMPLES_PER_REASON per reason, the smallest md5(id)
    (the same on every run); two scans of rejects: the ids (small columns), then the chosen rows' text."""
    if not reasons:
        return {}
    chosen = con.execute(
        "SELECT stage, reason, id FROM rejects QUALIFY row_number() OVER "
        f"(PARTITION BY stage, reason ORDER BY md5(coalesce(id, '')), id) <= {EXAMPLES_PER_REASON} "
        "ORDER BY stage, reason, md5(coalesce(id, '')), id").fetchall()
    if not chosen:
        return {}
    keys = ", ".join("(?, ?, ?)" for _ in chosen)
    flat = [x for row in chosen for x in row]
    rows = con.execute(
        f"SELECT stage, reason, id, any_value(url), any_value(detail), any_value(text) FROM rejects "
        f"WHERE (stage, reason, id) IN ({keys}) GROUP BY ALL", flat).fetchall() if chosen else []
    found = {(s, r, i): (u, d, t) for s, r, i, u, d, t in rows}
    missing: dict[str, list[str]] = {}  # stage -> ids of rejects stored without text: take the stage's input
    for (s, _, i), (_, _, t) in found.items():
        if t is None:
            missing.setdefault(s, []).append(i)
    inputs = {s: (input_view(con, s), texts(con, input_view(con, s), ids)) for s, ids in missing.items()}
    out: dict[tuple[str, str], list[tuple]] = {}
    for s, r, i in chosen:
        url, detail, text = found.get((s, r, i), (None, None, None))
        note = ""
        if text is None:
            view, got = inputs.get(s, (None, {}))
            text = got.get(i)
            note = (f" <i>(text from {esc(view.removeprefix('docs_'))}, the stage's input)</i>" if text is not None
                    else " <i>(no text: the stage received the raw record)</i>")
        out.setdefault((s, r), []).append((i, url, detail, text, note))
    return out


def rejects_section(con, f: dict) -> list[str]:
    stages = f["stages"]

    def share(stage, n):
        docs_in = stages.get(stage, {}).get("docs_in", 0) + stages.get(stage, {}).get("upsampled", 0)
        return round(100 * n / docs_in, 1) if docs_in else 0.0

    rows = [(s, r, n, share(s, n)) for s, r, n in f["rejects"]]
    out = ["<h2>Rejects by reason</h2>",
           table(["stage", "reason", "documents", "% of stage input"], rows, "rejects")]
    examples = reject_examples(con, f["rejects"])
    if rows:
        out.append("<h3>Examples</h3><p>Up to 3 rejected documents per reason (the same ones on every run), "
                   "the start of the text stored with the reject (as the rejecting rule saw it).</p>")
    for s, r, n, pct in rows:
        shown = "".join(example(i, url, text, detail, note) for i, url, detail, text, note in examples.get((s, r), []))
        out.append(f"<details class='reason' data-stage='{esc(s)}' data-reason='{esc(r)}'><summary>{esc(s)} "
                   f"<b>{esc(r)}</b>: {n} documents, {pct}% of the stage's input</summary><ul>{shown}</ul></details>")
    return out


# --- lengths --------------------------------------------------------------------------------------------

def lengths_section(con) -> list[str]:
    """Characters per document, histograms of floor(log2(length)) per stage and source (one DuckDB GROUP BY
    per stage's documents), and a table of documents and characters per stage and source."""
    present = views(con)
    stage_views = [(s, f"docs_{s}") for s in stats.STAGE_ORDER if f"docs_{s}" in present]
    stage_views += sorted((v.removeprefix("docs_"), v) for v in present
                          if v.startswith("docs_") and v.removeprefix("docs_") not in stats.STAGE_ORDER)
    if not stage_views:
        return []
    bins, summary = [], []
    for stage, view in stage_views:  # one scan of each stage's text column
        got = con.execute(
            "SELECT src, b, grouping(b), count(*), sum(len), median(len)::BIGINT FROM (SELECT coalesce(source, "
            "'(none)') AS src, length(text) AS len, floor(log2(greatest(len, 1)))::INT AS b "
            f"FROM {view}) GROUP BY GROUPING SETS ((src, b), (src)) ORDER BY 1, 3, 2").fetchall()
        bins += [(stage, src, b, n) for src, b, whole, n, _, _ in got if not whole]
        summary += [(stage, src, n, int(total or 0), int(median or 0)) for src, _, whole, n, total, median in got
                    if whole]
    if not bins:  # stages that kept no documents
        return []
    out = ["<h2>Document length</h2>",
           "<p>Characters per document, by the documents each stage kept (bins of powers of two).</p>"]
    lo, hi = min(b for *_, b, _ in bins), max(b for *_, b, _ in bins)
    labels = list(range(lo, hi + 1))
    totals: dict[str, int] = {}
    for _, src, _, n in bins:
        totals[src] = totals.get(src, 0) + n
    sources = sorted(totals, key=lambda s: (-totals[s], s))
    shown = sorted(sources[:MAX_SERIES])
    groups = shown + (["other"] if len(sources) > MAX_SERIES else [])
    for group in groups:
        series = {}
        for stage, _ in stage_views:
            counts = dict.fromkeys(labels, 0)
            for st, src, b, n in bins:
                if st == stage and (src == group or (group == "other" and src not in shown)):
                    counts[b] += n
            series[stage] = [counts[b] for b in labels]
        out.append(grouped_bars([log2_label(b) for b in labels], series, f"characters per document: {group}",
                                xlabel="characters (at least)", ylabel="documents"))
    out.append(table(["stage", "source", "documents", "characters", "median characters"], summary, "lengths"))
    return out


__all__ = ["render", "clip", "source_funnel"]
