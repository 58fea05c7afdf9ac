"""`gristmill report OUT` (one offline HTML page) and `gristmill diff A B` (what changed between releases).

The page has the funnel per stage, rejects by reason, score histograms, the mixture's cluster
weights and the token counts; plots are PNGs embedded as base64, so the file opens anywhere.
The diff is computed by embedded DuckDB over both releases' manifest.json, `*/_stats` and `*/_rejects`.
"""

import base64
import html
from io import BytesIO

import duckdb

from pipelines import io, stats


def _png(fig, title: str) -> str:
    buffer = BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    width, height = fig.canvas.get_width_height()
    import matplotlib.pyplot as plt

    plt.close(fig)
    return (f'<figure><img alt="{html.escape(title)}" width="{width}" height="{height}" '
            f'src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}"></figure>')


def _table(headers: list[str], rows: list[tuple], table_id: str) -> str:
    """A table with an id; numbers are right-aligned (class num)."""
    def td(v):
        numeric = isinstance(v, (int, float)) and not isinstance(v, bool)
        return f"<td class='num'>{v}</td>" if numeric else f"<td>{html.escape(str(v))}</td>"

    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(td(v) for v in row) + "</tr>" for row in rows)
    return f"<table id='{table_id}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _bars(labels: list[str], values: list[float], title: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3))
    ax.bar([str(x) for x in labels], values, color="#4477aa")
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=90)
    fig.tight_layout()
    return _png(fig, title)


def render(output: str) -> str:
    f = stats.funnel(output)
    con = stats.connect(output)
    views = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    parts = [f"<h1>Release report: {html.escape(output)}</h1>", "<h2>Funnel</h2>",
             _table(["stage", "in", "kept", "rejected", "errors"],
                    [(s, v["docs_in"], v["docs_out"], v["rejected"], v["errors"]) for s, v in f["stages"].items()],
                    "funnel"),
             f"<p>records read {f['records_read']}, upsampled copies {f['upsampled']}, kept {f['kept']}: "
             f"{'adds up' if f['adds_up'] else 'DOES NOT ADD UP'}</p>",
             "<h2>Rejects by reason</h2>", _table(["stage", "reason", "documents"], f["rejects"], "rejects")]
    if f["errors"]:
        parts += ["<h2>Errors</h2>", _table(["stage", "file", "error", "records"], f["errors"], "errors")]
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
            con.execute("SELECT cluster, stratum, docs, tokens, top_terms FROM clusters ORDER BY cluster").fetchall()],
            "clusters")]
    if "samples" in views:
        tokens, samples, padding = con.execute("SELECT sum(tokens), count(*), sum(padding) FROM samples").fetchone()
        per_source = con.execute("SELECT source, sum(tokens) FROM tokens GROUP BY 1 ORDER BY 1").fetchall()
        parts += ["<h2>Tokens</h2>", f"<p>{tokens} tokens in {samples} samples, {padding} padding</p>",
                  _bars([s for s, _ in per_source], [t for _, t in per_source], "tokens per source")]
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 6px}td.num{text-align:right}"
             "figure{margin:1em 0}img{max-width:100%;height:auto}")
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>gristmill report: {html.escape(output)}</title><style>{style}</style>"
            f"</head><body>{''.join(parts)}</body></html>\n")


class ReleaseError(Exception):
    """A release that `diff` cannot read (no manifest, or one that is not JSON); the message names the path."""


def _parquet(con, files: list[str], columns: dict[str, str]) -> str:
    """A SELECT over the Parquet files giving `columns` (name -> SQL type); NULL where no file has one."""
    listing = ", ".join(stats.sql_string(f) for f in files)
    source = f"read_parquet([{listing}], union_by_name=true)"
    present = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    select = ", ".join(f"CAST({name if name in present else 'NULL'} AS {kind}) AS {name}"
                       for name, kind in columns.items())
    return f"SELECT {select} FROM {source}"


_STAGE_RANK = "coalesce(list_position([" + ", ".join(stats.sql_string(s) for s in stats.STAGE_ORDER) + "], stage), 99)"


def diff(a: str, b: str) -> dict:
    """What changed from release A to release B, computed by embedded DuckDB over both releases'
    manifest.json and their `*/_stats` and `*/_rejects` Parquet (paths or fsspec URIs).

    Keys (pairs are A, B; None where a release does not have the stage, source or file):
    config [(key, a, b)] (dotted keys, JSON values), inputs_added / inputs_removed [path],
    kept [(stage, a, b)] (documents kept per stage), rejects [(stage, reason, a, b)],
    tokens [(source, a, b)] (None unless both releases were tokenized), outputs_same / outputs_changed
    (same path, other sha256) / outputs_added / outputs_removed (counts), outputs_by_dir
    [(top folder, same, changed, added, removed)], releases (name_a, name_b), paths (a, b).
    """
    con = duckdb.connect()
    con.execute("CREATE TABLE manifest (side VARCHAR, doc JSON)")
    con.execute("CREATE TABLE stats (side VARCHAR, stage VARCHAR, source VARCHAR, metric VARCHAR, value DOUBLE)")
    con.execute("CREATE TABLE rejects (side VARCHAR, stage VARCHAR, reason VARCHAR, n BIGINT)")
    for side, output in (("a", a), ("b", b)):
        path = io.join(output, "manifest.json")
        if not io.exists(path):
            raise ReleaseError(f"{path}: no such file (is {output} a finished gristmill release?)")
        stats.register_filesystem(con, path)
        try:
            con.execute(f"INSERT INTO manifest SELECT '{side}', json FROM read_json_objects({stats.sql_string(path)}, "
                        f"format='unstructured', maximum_object_size={1 << 30})")
        except duckdb.Error as exc:
            raise ReleaseError(f"{path}: not a readable manifest: {exc}") from exc
        stat_files = io.glob(output, "*/_stats/*.parquet")
        if stat_files:
            con.execute(f"INSERT INTO stats SELECT '{side}', * FROM ("
                        + _parquet(con, stat_files, {"stage": "VARCHAR", "source": "VARCHAR", "metric": "VARCHAR",
                                                     "value": "DOUBLE"}) + ")")
        else:  # no per-shard statistics left: the funnel counts the manifest recorded
            con.execute(f"""INSERT INTO stats SELECT '{side}', s.key, NULL, c.key, c.value::DOUBLE
                FROM manifest, json_each(doc->'counts'->'stages') s, json_each(s.value) c WHERE side = '{side}'""")
        reject_files = io.glob(output, "*/_rejects/*.parquet")
        if reject_files:
            con.execute(f"INSERT INTO rejects SELECT '{side}', stage, reason, count(*) FROM ("
                        + _parquet(con, reject_files, {"stage": "VARCHAR", "reason": "VARCHAR"}) + ") GROUP BY ALL")

    # config: every leaf (scalars and lists) of the resolved config under its dotted key
    config = con.execute("""
        WITH RECURSIVE walk(side, key, value) AS (
            SELECT side, e.key, e.value FROM manifest, json_each(doc->'config') e
            UNION ALL
            SELECT w.side, w.key || '.' || e.key, e.value FROM walk w, json_each(w.value) e
            WHERE json_type(w.value) = 'OBJECT'
        ), leaf AS (SELECT side, key, value::VARCHAR AS value FROM walk WHERE json_type(value) <> 'OBJECT')
        SELECT key, a.value, b.value
        FROM (SELECT * FROM leaf WHERE side = 'a') a FULL JOIN (SELECT * FROM leaf WHERE side = 'b') b USING (key)
        WHERE a.value IS DISTINCT FROM b.value ORDER BY key""").fetchall()

    con.execute("""CREATE VIEW inputs AS
        SELECT side, e.value->>'path' AS path FROM manifest, json_each(doc->'inputs') e""")
    added = [r[0] for r in con.execute("""SELECT path FROM inputs WHERE side = 'b' EXCEPT
                                          SELECT path FROM inputs WHERE side = 'a' ORDER BY path""").fetchall()]
    removed = [r[0] for r in con.execute("""SELECT path FROM inputs WHERE side = 'a' EXCEPT
                                            SELECT path FROM inputs WHERE side = 'b' ORDER BY path""").fetchall()]

    # stages each release ran (a stage it did not run gives None, a reason it did not reject gives 0)
    con.execute("""CREATE VIEW ran AS SELECT DISTINCT side, stage FROM stats WHERE metric = 'docs_out'""")
    kept = con.execute(f"""
        SELECT stage, sum(value) FILTER (side = 'a')::BIGINT, sum(value) FILTER (side = 'b')::BIGINT
        FROM stats WHERE metric = 'docs_out' GROUP BY stage ORDER BY {_STAGE_RANK}, stage""").fetchall()
    rejects = con.execute(f"""
        WITH reasons AS (SELECT DISTINCT stage, reason FROM rejects),
        counts AS (SELECT side, stage, reason, sum(n) AS n FROM rejects GROUP BY ALL)
        SELECT stage, reason,
               CASE WHEN ra.stage IS NOT NULL OR ca.n IS NOT NULL THEN coalesce(ca.n, 0) END::BIGINT,
               CASE WHEN rb.stage IS NOT NULL OR cb.n IS NOT NULL THEN coalesce(cb.n, 0) END::BIGINT
        FROM reasons
        LEFT JOIN (SELECT * FROM ran WHERE side = 'a') ra USING (stage)
        LEFT JOIN (SELECT * FROM ran WHERE side = 'b') rb USING (stage)
        LEFT JOIN (SELECT * FROM counts WHERE side = 'a') ca USING (stage, reason)
        LEFT JOIN (SELECT * FROM counts WHERE side = 'b') cb USING (stage, reason)
        ORDER BY {_STAGE_RANK}, stage, reason""").fetchall()
    tokens = con.execute("""
        SELECT source, coalesce(sum(value) FILTER (side = 'a'), 0)::BIGINT,
               coalesce(sum(value) FILTER (side = 'b'), 0)::BIGINT
        FROM stats WHERE stage = 'tokenize' AND metric = 'tokens' GROUP BY source ORDER BY source""").fetchall()
    both_tokenized = con.execute("""SELECT count(DISTINCT side) = 2 FROM stats
                                    WHERE stage = 'tokenize' AND metric = 'tokens'""").fetchone()[0]

    # outputs by sha256: same, changed (same path, other bytes), added (only in B), removed (only in A)
    con.execute("""CREATE VIEW outputs AS
        SELECT path, a.sha256 AS sha_a, b.sha256 AS sha_b,
               CASE WHEN a.path IS NULL THEN 'added' WHEN b.path IS NULL THEN 'removed'
                    WHEN a.sha256 IS NOT DISTINCT FROM b.sha256 THEN 'same' ELSE 'changed' END AS status
        FROM (SELECT e.value->>'path' AS path, e.value->>'sha256' AS sha256 FROM manifest, json_each(doc->'outputs') e
              WHERE side = 'a') a
        FULL JOIN (SELECT e.value->>'path' AS path, e.value->>'sha256' AS sha256
                   FROM manifest, json_each(doc->'outputs') e WHERE side = 'b') b USING (path)""")
    count = "count(*) FILTER (status = '{}')"
    by_dir = con.execute(f"""
        SELECT split_part(path, '/', 1) AS dir, {count.format('same')}, {count.format('changed')},
               {count.format('added')}, {count.format('removed')} FROM outputs GROUP BY dir ORDER BY dir""").fetchall()
    totals = dict(con.execute("SELECT status, count(*) FROM outputs GROUP BY status").fetchall())
    releases = con.execute("""SELECT max(doc->>'release') FILTER (side = 'a'), max(doc->>'release') FILTER (side = 'b')
                              FROM manifest""").fetchone()
    return {"paths": (a, b), "releases": tuple(releases), "config": config, "inputs_added": added,
            "inputs_removed": removed, "kept": kept, "rejects": rejects, "tokens": tokens if both_tokenized else None,
            "outputs_same": totals.get("same", 0), "outputs_changed": totals.get("changed", 0),
            "outputs_added": totals.get("added", 0), "outputs_removed": totals.get("removed", 0),
            "outputs_by_dir": by_dir}


def _text_table(headers: list[str], rows: list[tuple], indent: str = "  ", max_width: int = 60) -> list[str]:
    """Rows as aligned text columns: numbers (and signed changes) right-aligned, text left-aligned."""
    def cell(v):
        text = "-" if v is None else str(v)
        return text if len(text) <= max_width else text[:max_width - 1] + "…"

    cells = [[cell(v) for v in row] for row in rows]
    numeric = [all(isinstance(row[i], (int, float)) or row[i] is None or str(row[i])[:1] in "+-"
                   for row in rows) for i in range(len(headers))]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values):
        return (indent + "  ".join(v.rjust(w) if num else v.ljust(w)
                                   for v, w, num in zip(values, widths, numeric))).rstrip()

    return [line(headers)] + [line(r) for r in cells]


def _change(a, b) -> str:
    if a is None or b is None or a == b:
        return ""
    return f"{b - a:+d}"


def format_diff(d: dict) -> str:
    a, b = d.get("paths", ("A", "B"))
    name_a, name_b = d.get("releases", (None, None))
    lines = [f"A: {a}" + (f" (release {name_a})" if name_a else ""),
             f"B: {b}" + (f" (release {name_b})" if name_b else ""), "", f"config changes: {len(d['config'])}"]
    if d["config"]:
        lines += _text_table(["key", "A", "B"], d["config"])
    lines += ["", f"inputs: {len(d['inputs_added'])} added, {len(d['inputs_removed'])} removed"]
    lines += [f"  + {p}" for p in d["inputs_added"]] + [f"  - {p}" for p in d["inputs_removed"]]
    lines += ["", "documents kept per stage:"]
    lines += _text_table(["stage", "A", "B", "change"], [(s, x, y, _change(x, y)) for s, x, y in d["kept"]])
    if d.get("rejects"):
        lines += ["", "rejects by stage and reason:"]
        lines += _text_table(["stage", "reason", "A", "B", "change"],
                             [(s, r, x, y, _change(x, y)) for s, r, x, y in d["rejects"]])
    if d.get("tokens") is not None:
        rows = [(s, x, y, _change(x, y)) for s, x, y in d["tokens"]]
        ta, tb = sum(x for _, x, _ in d["tokens"]), sum(y for _, _, y in d["tokens"])
        lines += ["", "tokens per source:"] + _text_table(["source", "A", "B", "change"],
                                                           rows + [("(all)", ta, tb, _change(ta, tb))])
    elif "tokens" in d:
        lines += ["", "tokens per source: not compared (only releases that were both tokenized are)"]
    lines += ["", f"outputs: {d['outputs_same']} identical, {d['outputs_changed']} changed, "
                  f"{d.get('outputs_added', 0)} added, {d.get('outputs_removed', 0)} removed (by sha256)"]
    if d.get("outputs_by_dir"):
        lines += _text_table(["folder", "identical", "changed", "added", "removed"], d["outputs_by_dir"])
    return "\n".join(lines)
