"""The mixture plan's selection over a DuckDB view of every document's features, in memory that does not
grow with the release: DuckDB holds the documents (memory capped, spilling to disk) and Python holds one
batch of them at a time.

- Each stratum's pool, candidates and target come from per-stratum sums.
- A stratum whose candidates reach its target is streamed best first (or in seeded order) and filled
  as `sampling.fill` does: a candidate is taken while it fits, one that would overshoot is passed over
  for later, smaller ones, and at the end the candidate closest to the remaining gap is added if that
  helps (the first smallest passed over: every one passed over is larger than the final gap).
- A stratum whose candidates fall short is taken whole; when it is upsampled, `sampling.fill` draws its
  extra copies. Such a stratum is held in memory, one at a time (its candidates' token counts, scores,
  tie-break keys and row keys).

The view must have columns id, part, row_in_part (the document's position in its part: the key, as ids
may repeat), tokens, excluded_by, order_score, tiebreak and the strata columns.
"""

import numpy as np
import pyarrow as pa

from pipelines import io
from pipelines.mixture import sampling
from pipelines.mixture.config import MixtureConfig

GLOBAL_STRATUM = "all"  # the key of every document when `strata` is empty
BATCH = 100_000  # rows per batch streamed to Python
SELECTION_SCHEMA = pa.schema([("id", pa.string()), ("part", pa.string()), ("stratum", pa.string()),
                              ("copies", pa.int64()), ("reason", pa.string())])


def rows_of(files: list[str]) -> str:
    """A query of the rows of per-part Parquet files, each with its position in its part (`row_in_part`)."""
    return (f"SELECT * EXCLUDE (file_row_number), file_row_number AS row_in_part "
            f"FROM read_parquet({io.sql_list(files)}, file_row_number = true)")


def stratum_sql(strata: list[str]) -> str:
    """A document's stratum key: its strata values joined by '/', 'none' for a missing one."""
    if not strata:
        return f"'{GLOBAL_STRATUM}'"
    return " || '/' || ".join(f"coalesce(CAST({s} AS VARCHAR), 'none')" for s in strata)


class _Greedy:
    """The first pass of `sampling.fill` over one stratum's candidates, fed in its order a batch at a time."""

    def __init__(self, target: float):
        self.target, self.taken = target, 0
        self.passed: tuple[int, str, int] | None = None  # (tokens, part, row): the first smallest passed over

    def feed(self, tokens: np.ndarray, parts: pa.Array, rows: np.ndarray) -> np.ndarray:
        take = np.zeros(len(tokens), dtype=bool)
        left = np.arange(len(tokens))  # positions that may still fit, in order
        while len(left):
            total = self.taken + np.cumsum(tokens[left])
            fits = total <= self.target  # a prefix: token counts are >= 0
            run = len(fits) if fits.all() else int(np.argmin(fits))
            take[left[:run]] = True
            self.taken = int(total[run - 1]) if run else self.taken
            left = left[run + 1:]  # the one at `run` was passed over
            left = left[self.taken + tokens[left] <= self.target]  # the gap only shrinks: the rest never fit
        passed = np.flatnonzero(~take)
        if len(passed):
            k = passed[np.argmin(tokens[passed])]  # the first among equals
            if self.passed is None or tokens[k] < self.passed[0]:
                self.passed = (int(tokens[k]), parts[int(k)].as_py(), int(rows[k]))
        return take

    def closest(self) -> tuple[str, int] | None:
        """(part, row) of the candidate that brings the total closest to the target, if adding it helps."""
        if self.passed is None or self.taken >= self.target:
            return None
        gap = self.target - self.taken
        return self.passed[1:] if abs(self.passed[0] - gap) < gap else None


def select(con, cfg: MixtureConfig, view: str) -> tuple[list[dict], object]:
    """(the strata rows, a reader of the selection's record batches (SELECTION_SCHEMA) sorted by part and id)."""
    con.execute(f"CREATE OR REPLACE VIEW planned AS SELECT *, {stratum_sql(cfg.strata)} AS stratum FROM {view}")
    aggregates = {s: (docs, pool, candidates, candidate_tokens) for s, docs, pool, candidates, candidate_tokens in
                  con.execute("SELECT stratum, count(*), coalesce(sum(tokens), 0), count(*) FILTER (excluded_by IS "
                              "NULL), coalesce(sum(tokens) FILTER (excluded_by IS NULL), 0) FROM planned "
                              "GROUP BY stratum").fetchall()}
    names = sorted(aggregates)
    # DataMan mixes the documents that pass its score filter: by default a stratum's share is counted
    # over its candidates, so a stratum with few of them is not upsampled to its share of the raw input
    shares = {s: int(aggregates[s][3 if cfg.shares == "after_where" else 1]) for s in names}
    wanted = sampling.targets(shares, cfg.budget_tokens, cfg.weights)
    con.execute("CREATE OR REPLACE TABLE taken (part VARCHAR, row_in_part BIGINT, copies BIGINT)")
    streamed = [s for s in names if 0 < wanted[s] <= aggregates[s][3]]
    short = [s for s in names if aggregates[s][2] and aggregates[s][3] < wanted[s]]
    if cfg.upsample:
        _upsample(con, cfg, {s: (wanted[s], cfg.seed * 1_000_003 + names.index(s)) for s in short})
    elif short:  # every candidate once
        con.register("short_strata", pa.table({"stratum": pa.array(short, pa.string())}))
        con.execute("INSERT INTO taken SELECT part, row_in_part, 1 FROM planned WHERE excluded_by IS NULL "
                    "AND stratum IN (SELECT stratum FROM short_strata)")
    _stream(con, cfg, streamed, wanted)
    selected = {s: (docs, tokens, extra) for s, docs, tokens, extra in con.execute(
        "SELECT stratum, count(*), sum(copies * tokens), sum(copies - 1) FROM taken JOIN planned "
        "USING (part, row_in_part) GROUP BY stratum").fetchall()}
    reader = con.sql("SELECT id, part, stratum, coalesce(copies, 0) AS copies, CASE WHEN copies IS NULL THEN "
                     "coalesce(excluded_by, 'over_budget') END AS reason FROM planned LEFT JOIN taken "
                     "USING (part, row_in_part) ORDER BY part, id, row_in_part").to_arrow_reader(BATCH)
    strata = []
    for s in names:
        docs, pool, candidates, candidate_tokens = aggregates[s]
        chosen, tokens, extra = (int(x or 0) for x in selected.get(s, (0, 0, 0)))
        strata.append({"stratum": s, "pool_docs": docs, "pool_tokens": int(pool),
                       "weight": wanted[s] / cfg.budget_tokens, "target_tokens": round(wanted[s], 3),
                       "candidates": candidates, "candidate_tokens": int(candidate_tokens), "selected_docs": chosen,
                       "selected_tokens": tokens, "upsampled_copies": extra,
                       "shortfall_tokens": max(0, int(np.ceil(wanted[s])) - tokens)})
    return strata, reader


def _sorted_candidates(con, strata: list[str], order: str, columns: str):
    """The candidates of `strata`, in one sorted pass, as batches split where the stratum changes:
    (stratum, batch slice)."""
    con.register("chosen_strata", pa.table({"stratum": pa.array(strata, pa.string())}))
    reader = con.sql(f"SELECT stratum, {columns} FROM planned WHERE excluded_by IS NULL AND stratum IN "
                     f"(SELECT stratum FROM chosen_strata) ORDER BY stratum, {order}").to_arrow_reader(BATCH)
    for batch in reader:
        keys = batch.column(0).to_numpy(zero_copy_only=False)
        starts = [0, *(np.flatnonzero(keys[1:] != keys[:-1]) + 1).tolist(), len(keys)]
        for a, b in zip(starts, starts[1:]):
            yield keys[a], batch.slice(a, b - a)


def _stream(con, cfg: MixtureConfig, strata: list[str], wanted: dict[str, float]) -> None:
    """The strata whose candidates reach their target, filled greedily in their order."""
    if not strata:
        return
    # numpy's order in sampling.fill: best score first (NaN last), then the seeded key, then part and id
    best = "order_score IS NULL OR isnan(order_score), order_score DESC, " if cfg.top_k_by else ""
    writer = con.cursor()  # inserts beside the open stream
    greedy = None
    for stratum, batch in _sorted_candidates(con, strata, f"{best}tiebreak, part, id, row_in_part",
                                             "tokens, part, row_in_part"):
        if greedy is None or greedy[0] != stratum:
            _close(writer, greedy)
            greedy = (stratum, _Greedy(wanted[stratum]))
        tokens = batch.column(1).to_numpy(zero_copy_only=False).astype(np.int64)
        rows = batch.column(3).to_numpy(zero_copy_only=False)
        where = pa.array(np.flatnonzero(greedy[1].feed(tokens, batch.column(2), rows)))
        _insert(writer, batch.column(2).take(where), batch.column(3).take(where), np.ones(len(where), dtype=np.int64))
    _close(writer, greedy)


def _close(con, greedy) -> None:
    if greedy is not None and (last := greedy[1].closest()) is not None:
        _insert(con, pa.array([last[0]]), pa.array([last[1]], pa.int64()), np.ones(1, dtype=np.int64))


def _upsample(con, cfg: MixtureConfig, short: dict[str, tuple[float, int]]) -> None:
    """Short strata (target, seed) through sampling.fill, one stratum held at a time, in (part, id) order."""
    if not short:
        return
    writer, pending = con.cursor(), []

    def fill(stratum: str, table: pa.Table) -> None:
        target, seed = short[stratum]
        order = table.column("order_score").to_numpy(zero_copy_only=False) if cfg.top_k_by else None
        copies = sampling.fill(table.column("tokens").to_numpy(zero_copy_only=False).astype(np.int64), order,
                               table.column("tiebreak").to_numpy(zero_copy_only=False), target, True, seed=seed,
                               max_copies=cfg.max_repeats)
        _insert(writer, table.column("part"), table.column("row_in_part"), copies)

    for stratum, batch in _sorted_candidates(con, list(short), "part, id, row_in_part",
                                             "part, row_in_part, tokens, order_score, tiebreak"):
        if pending and pending[0][0] != stratum:
            fill(pending[0][0], pa.Table.from_batches([b for _, b in pending]))
            pending = []
        pending.append((stratum, batch))
    if pending:
        fill(pending[0][0], pa.Table.from_batches([b for _, b in pending]))


def _insert(con, parts, rows, copies: np.ndarray) -> None:
    chosen = pa.table({"part": parts, "row_in_part": rows, "copies": pa.array(copies, pa.int64())})
    chosen = chosen.filter(pa.array(copies > 0))
    if chosen.num_rows:
        con.register("chosen", chosen)
        con.execute("INSERT INTO taken SELECT part, row_in_part, copies FROM chosen")
        con.unregister("chosen")
