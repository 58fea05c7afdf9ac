"""`gristmill report OUT` (one offline HTML page) and `gristmill diff A B` (what changed between releases).

The page has the funnel per stage, rejects by reason, score histograms, the mixture's cluster
weights and the token counts; plots are PNGs embedded as base64, so the file opens anywhere.
"""

import base64
import html
import json
from io import BytesIO

from pipelines import io, stats


def _png(fig) -> str:
    buffer = BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _table(headers: list[str], rows: list[tuple]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _bars(labels: list[str], values: list[float], title: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3))
    ax.bar([str(x) for x in labels], values, color="#4477aa")
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=90)
    fig.tight_layout()
    return _png(fig)


def render(output: str) -> str:
    f = stats.funnel(output)
    con = stats.connect(output)
    views = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    parts = [f"<h1>Release report: {html.escape(output)}</h1>", "<h2>Funnel</h2>",
             _table(["stage", "in", "kept", "rejected", "errors"],
                    [(s, v["docs_in"], v["docs_out"], v["rejected"], v["errors"]) for s, v in f["stages"].items()]),
             f"<p>records read {f['records_read']}, upsampled copies {f['upsampled']}, kept {f['kept']}: "
             f"{'adds up' if f['adds_up'] else 'DOES NOT ADD UP'}</p>",
             "<h2>Rejects by reason</h2>", _table(["stage", "reason", "documents"], f["rejects"])]
    if f["errors"]:
        parts += ["<h2>Errors</h2>", _table(["stage", "file", "error", "records"], f["errors"])]
    hist = con.execute("SELECT metric, sum(value) FROM stats WHERE metric LIKE 'hist.%' GROUP BY 1 ORDER BY 1").fetchall()
    families: dict[str, list[tuple[str, float]]] = {}
    for metric, value in hist:
        family, _, bucket = metric[len("hist."):].rpartition(".") if not metric.startswith("hist.preselect_score") \
            else ("preselect_score", None, metric[len("hist.preselect_score."):])
        families.setdefault(family, []).append((bucket, value))
    if families:
        parts.append("<h2>Score histograms</h2>")
        parts += [_bars([b for b, _ in rows], [v for _, v in rows], family) for family, rows in sorted(families.items())]
    mixture = io.join(output, "mixture", "mixture.json")
    if io.exists(mixture):
        weights = io.read_json(mixture)["weights"]
        parts += ["<h2>Mixture weights</h2>", _bars(list(weights), list(weights.values()), "weight per cluster")]
    if "clusters" in views:
        parts += ["<h2>Clusters</h2>", _table(["cluster", "stratum", "docs", "tokens", "top terms"], [
            (c, s, d, t, ", ".join(terms)) for c, s, d, t, terms in
            con.execute("SELECT cluster, stratum, docs, tokens, top_terms FROM clusters ORDER BY cluster").fetchall()])]
    if "samples" in views:
        tokens, samples, padding = con.execute("SELECT sum(tokens), count(*), sum(padding) FROM samples").fetchone()
        per_source = con.execute("SELECT source, sum(tokens) FROM tokens GROUP BY 1 ORDER BY 1").fetchall()
        parts += ["<h2>Tokens</h2>", f"<p>{tokens} tokens in {samples} samples, {padding} padding</p>",
                  _bars([s for s, _ in per_source], [t for _, t in per_source], "tokens per source")]
    style = "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"
    return f"<!doctype html><html><head><meta charset='utf-8'><title>gristmill report</title><style>{style}</style>" \
           f"</head><body>{''.join(parts)}</body></html>\n"


def diff(a: str, b: str) -> dict:
    """Config keys, input files, funnel counts and outputs that differ between two releases."""
    ma, mb = io.read_json(io.join(a, "manifest.json")), io.read_json(io.join(b, "manifest.json"))

    def flat(obj, prefix=""):
        if isinstance(obj, dict):
            return {k: v for key, val in obj.items() for k, v in flat(val, f"{prefix}{key}.").items()}
        return {prefix.rstrip("."): json.dumps(obj, sort_keys=True)}

    ca, cb = flat(ma["config"]), flat(mb["config"])
    config = sorted((k, ca.get(k), cb.get(k)) for k in set(ca) | set(cb) if ca.get(k) != cb.get(k))
    inputs_a, inputs_b = {i["path"] for i in ma["inputs"]}, {i["path"] for i in mb["inputs"]}
    sa, sb = ma["counts"]["stages"], mb["counts"]["stages"]
    funnel = [(s, sa.get(s, {}).get("docs_out"), sb.get(s, {}).get("docs_out")) for s in stats.STAGE_ORDER
              if s in sa or s in sb]
    oa, ob = {o["path"]: o["sha256"] for o in ma["outputs"]}, {o["path"]: o["sha256"] for o in mb["outputs"]}
    return {"config": config, "inputs_added": sorted(inputs_b - inputs_a), "inputs_removed": sorted(inputs_a - inputs_b),
            "kept": funnel, "outputs_changed": sum(oa.get(p) != ob.get(p) for p in set(oa) | set(ob)),
            "outputs_same": sum(oa.get(p) == ob.get(p) for p in set(oa) & set(ob))}


def format_diff(d: dict) -> str:
    lines = ["config changes:"] + [f"  {k}: {va} -> {vb}" for k, va, vb in d["config"]] or ["  none"]
    lines += [f"inputs added: {len(d['inputs_added'])}, removed: {len(d['inputs_removed'])}"]
    lines += ["kept per stage (A -> B):"] + [f"  {s:<10}{a!s:>10} -> {b!s:<10}" for s, a, b in d["kept"]]
    lines.append(f"outputs: {d['outputs_same']} identical, {d['outputs_changed']} changed, added or removed")
    return "\n".join(lines)
