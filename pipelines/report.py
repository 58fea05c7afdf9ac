"""`gristmill report OUT`: one offline HTML page.

The page has the funnel per stage and rejects by reason, then each stage's own sections (score
histograms, the mixture's cluster weights, the token counts), and the ablation when `gristmill ablate`
wrote OUT/ablation.json; plots are PNGs embedded as base64, so the file opens anywhere.
"""

import html

from pipelines import ablate, stats
from pipelines.registry import STAGES
from pipelines.report_parts import table


def render(output: str) -> str:
    f = stats.funnel(output)
    con = stats.connect(output)
    parts = [f"<h1>Release report: {html.escape(output)}</h1>", "<h2>Funnel</h2>",
             table(["stage", "in", "kept", "rejected", "errors"],
                    [(s, v["docs_in"], v["docs_out"], v["rejected"], v["errors"]) for s, v in f["stages"].items()],
                    "funnel"),
             f"<p>records read {f['records_read']}, upsampled copies {f['upsampled']}, kept {f['kept']}: "
             f"{'adds up' if f['adds_up'] else 'DOES NOT ADD UP'}</p>",
             "<h2>Rejects by reason</h2>", table(["stage", "reason", "documents"], f["rejects"], "rejects")]
    if f["errors"]:
        parts += ["<h2>Errors</h2>", table(["stage", "file", "error", "records"], f["errors"], "errors")]
    for stage in STAGES:  # each stage's own sections, in pipeline order
        if stage.report is not None:
            parts += stage.report(con, output)
    parts += ablate.report_section(output)  # `gristmill ablate OUT` wrote OUT/ablation.json
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 6px}td.num{text-align:right}"
             "figure{margin:1em 0}img{max-width:100%;height:auto}")
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>gristmill report: {html.escape(output)}</title><style>{style}</style>"
            f"</head><body>{''.join(parts)}</body></html>\n")
