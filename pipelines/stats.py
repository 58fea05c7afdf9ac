"""Statistics of a release with embedded DuckDB: one view per stage plus rejects, errors and stats.

Views: docs_<stage> (kept documents), rejects, errors, stats (long format: stage, part, source,
input_file, metric, value), and the stages' own: after tokenizing `tokens` (one row per packed piece:
shard, sample, doc_id, source, url, token offsets, split) and `samples` (one row per sample: tokens,
padding); after a mixture stage `mixture` (per document: stratum, copies, reason) and with CLIMB
`clusters`. The funnel is computed from `stats` and checked to add up.
"""

import duckdb

from pipelines import io
from pipelines.registry import STAGES

STAGE_ORDER = ["read"] + [stage.name for stage in STAGES]  # the reader first: it is fused into the first stage


def stage_names(output: str) -> list[str]:
    present = {p.rstrip("/").split("/")[-3] for p in io.glob(output, "*/_stats/*.parquet")}
    return [s for s in STAGE_ORDER if s in present] + sorted(present - set(STAGE_ORDER))


def connect(output: str) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the release's views registered."""
    con = duckdb.connect()
    io.register_filesystem(con, output)
    for name, pattern in [("rejects", "*/_rejects/*.parquet"), ("errors", "*/_errors/*.parquet"),
                          ("stats", "*/_stats/*.parquet")]:
        _view(con, name, io.glob(output, pattern))
    for stage in STAGES:  # a stage's own views, e.g. tokenize's `tokens` and `samples`
        for name, pattern in stage.views:
            _view(con, name, io.glob(output, f"{stage.name}/{pattern}"))
    for stage in stage_names(output):
        files = io.glob(output, f"{stage}/part-*.parquet")
        if files:
            _view(con, f"docs_{stage}", files)
    return con


def sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _view(con, name: str, files: list[str]) -> None:
    if files:
        listing = ", ".join(sql_string(f) for f in files)
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet([{listing}], union_by_name=true)")


def funnel(output: str) -> dict:
    """Per stage: docs in, kept, rejected, errors; rejects by reason; errors by file; and whether it adds up."""
    con = connect(output)
    totals = con.execute(
        "SELECT stage, metric, sum(value) FROM stats "
        "WHERE metric IN ('docs_in','docs_out','rejected','errors','upsampled') "
        "GROUP BY ALL"
    ).fetchall()
    stages: dict[str, dict[str, int]] = {}
    for stage, metric, value in totals:
        stages.setdefault(stage, {})[metric] = int(value)
    rank = {name: i for i, name in enumerate(STAGE_ORDER)}
    order = sorted(stages, key=lambda s: (rank.get(s, len(rank)), s))
    tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    reasons = con.execute(
        "SELECT stage, reason, count(*) AS n FROM rejects GROUP BY ALL ORDER BY stage, n DESC, reason"
    ).fetchall() if "rejects" in tables else []
    errors = con.execute(
        "SELECT stage, input_file, error, count(*) AS n FROM errors GROUP BY ALL ORDER BY n DESC, input_file"
    ).fetchall() if "errors" in tables else []
    read = stages.get("read", {}).get("docs_in", 0)
    last = stages[order[-1]]["docs_out"] if order else 0
    lost = sum(s.get("rejected", 0) + s.get("errors", 0) for s in stages.values())
    # the mixture stage may write a document more than once (upsampling): those rows are counted apart
    added = sum(s.get("upsampled", 0) for s in stages.values())
    balanced = all(s["docs_in"] + s.get("upsampled", 0) == s["docs_out"] + s["rejected"] + s["errors"]
                   for s in stages.values())
    return {"stages": {s: stages[s] for s in order}, "rejects": reasons, "errors": errors, "records_read": read,
            "upsampled": added, "kept": last, "adds_up": balanced and read + added == last + lost}


def format_funnel(f: dict) -> str:
    width = max([10] + [len(stage) + 1 for stage in f["stages"]])  # decontaminate is 13 characters
    lines = [f"{'stage':<{width}}{'in':>10}{'kept':>10}{'rejected':>10}{'errors':>8}"]
    for stage, s in f["stages"].items():
        lines.append(f"{stage:<{width}}{s['docs_in']:>10}{s['docs_out']:>10}{s['rejected']:>10}{s['errors']:>8}")
    if f["rejects"]:
        lines.append("\nrejects by reason:")
        lines += [f"  {stage:<{width}}{reason:<44}{n:>8}" for stage, reason, n in f["rejects"]]
    if f["errors"]:
        lines.append("\nerrors by file:")
        lines += [f"  {stage:<9}{error:<18}{n:>6}  {path}" for stage, path, error, n in f["errors"]]
    verdict = "adds up" if f["adds_up"] else "DOES NOT ADD UP"
    upsampled = f" + upsampled copies {f['upsampled']}" if f.get("upsampled") else ""
    lines.append(f"\nrecords read {f['records_read']}{upsampled} = kept {f['kept']} + rejected + errors: {verdict}")
    return "\n".join(lines)
