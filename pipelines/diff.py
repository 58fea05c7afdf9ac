"""`gristmill diff A B`: what changed between two releases, computed by embedded DuckDB over both
releases' manifest.json, `*/_stats` and `*/_rejects` (paths or fsspec URIs)."""

import duckdb

from pipelines import io, stats

_STAGE_RANK = "coalesce(list_position([" + ", ".join(stats.sql_string(s) for s in stats.STAGE_ORDER) + "], stage), 99)"


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
        io.register_filesystem(con, path)
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
        FROM stats WHERE metric = 'tokens' GROUP BY source ORDER BY source""").fetchall()
    both_tokenized = con.execute("SELECT count(DISTINCT side) = 2 FROM stats WHERE metric = 'tokens'").fetchone()[0]

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
