"""The mixture plan's selection over a DuckDB view of every document's features, in memory that does not
grow with the release: DuckDB holds the documents (memory capped, spilling to disk) and Python holds one
batch of them at a time.

- Each stratum's pool, candidates and target come from per-stratum aggregates.
- A stratum whose candidates exceed its target is streamed best first (or in seeded order) and filled
  as `sampling.fill` does: a candidate is taken while it fits, one that would overshoot is passed over
  for later, smaller ones, and at the end the candidate closest to the remaining gap is added if that
  helps (the first smallest passed over: every one passed over is larger than the final gap).
- A stratum whose candidates fall short is taken whole; when it is upsampled, `sampling.fill` draws its
  extra copies from its candidates' token counts (that stratum alone is held in memory, 3 numbers per
  candidate).

The view must have columns id, part, tokens, excluded_by, order_score, tiebreak and the strata columns.
"""

import numpy as np
import pyarrow as pa

from pipelines.mixture import sampling
from pipelines.mixture.config import MixtureConfig

GLOBAL_STRATUM = "all"  # the key of every document when `strata` is empty
BATCH = 100_000  # rows per batch streamed to Python
SELECTION_SCHEMA = pa.schema([("id", pa.string()), ("part", pa.string()), ("stratum", pa.string()),
                              ("copies", pa.int64()), ("reason", pa.string())])


def stratum_sql(strata: list[str]) -> str:
    """A document's stratum key: its strata values joined by '/', 'none' for a missing one."""
    if not strata:
        return f"'{GLOBAL_STRATUM}'"
    return " || '/' || ".join(f"coalesce(CAST({s} AS VARCHAR), 'none')" for s in strata)


class _Greedy:
    """The first pass of `sampling.fill` over one stratum's candidates, fed in its order a batch at a time."""

    def __init__(self, target: float):
        self.target, self.taken = target, 0
        self.passed: tuple[int, str, str] | None = None  # (tokens, part, id): the first smallest passed over

    def feed(self, tokens: np.ndarray, parts: pa.Array, ids: pa.Array) -> np.ndarray:
        take = np.zeros(len(tokens), dtype=bool)
        p = 0
        while p < len(tokens):
            total = self.taken + np.cumsum(tokens[p:])
            fits = total <= self.target  # a prefix: token counts are >= 0
            run = len(fits) if fits.all() else int(np.argmin(fits))
            if run:
                take[p:p + run] = True
                self.taken = int(total[run - 1])
                p += run
                continue
            later = np.flatnonzero(self.taken + tokens[p:] <= self.target)  # the next one that fits
            end = p + int(later[0]) if len(later) else len(tokens)
            k = p + int(np.argmin(tokens[p:end]))
            if self.passed is None or tokens[k] < self.passed[0]:
                self.passed = (int(tokens[k]), parts[k].as_py(), ids[k].as_py())
            p = end
        return take

    def closest(self) -> tuple[str, str] | None:
        """(part, id) of the candidate that brings the total closest to the target, if adding it helps."""
        if self.passed is None or self.taken >= self.target:
            return None
        gap = self.target - self.taken
        return self.passed[1:] if abs(self.passed[0] - gap) < gap else None


def select(con, cfg: MixtureConfig, view: str, write) -> list[dict]:
    """The strata rows; `write(batch)` receives the selection (SELECTION_SCHEMA) sorted by part and id."""
    stratum = stratum_sql(cfg.strata)
    con.execute(f"CREATE OR REPLACE VIEW planned AS SELECT *, {stratum} AS stratum FROM {view}")
    aggregates = {s: (docs, pool, candidates, candidate_tokens) for s, docs, pool, candidates, candidate_tokens in
                  con.execute("SELECT stratum, count(*), coalesce(sum(tokens), 0), count(*) FILTER (excluded_by IS "
                              "NULL), coalesce(sum(tokens) FILTER (excluded_by IS NULL), 0) FROM planned "
                              "GROUP BY stratum").fetchall()}
    names = sorted(aggregates)
    # DataMan mixes the documents that pass its score filter: by default a stratum's share is counted
    # over its candidates, so a stratum with few of them is not upsampled to its share of the raw input
    shares = {s: int(aggregates[s][3 if cfg.shares == "after_where" else 1]) for s in names}
    wanted = sampling.targets(shares, cfg.budget_tokens, cfg.weights)
    con.execute("CREATE OR REPLACE TABLE taken (part VARCHAR, id VARCHAR, copies BIGINT)")
    streamed = [s for s in names if 0 < wanted[s] <= aggregates[s][3]]
    for n, s in enumerate(names):
        if wanted[s] <= 0 or not aggregates[s][2] or s in streamed:
            continue
        if not cfg.upsample:  # short, not upsampled: every candidate once
            con.execute("INSERT INTO taken SELECT part, id, 1 FROM planned WHERE stratum = ? AND excluded_by IS NULL",
                        [s])
            continue
        short = con.sql("SELECT part, id, tokens, order_score, tiebreak FROM planned WHERE stratum = $s AND "
                        "excluded_by IS NULL ORDER BY part, id", params={"s": s}).to_arrow_table()
        order = short.column("order_score").to_numpy(zero_copy_only=False) if cfg.top_k_by else None
        copies = sampling.fill(short.column("tokens").to_numpy(zero_copy_only=False).astype(np.int64), order,
                               short.column("tiebreak").to_numpy(zero_copy_only=False), wanted[s], cfg.upsample,
                               seed=cfg.seed * 1_000_003 + n, max_copies=cfg.max_repeats)
        _insert(con, short.column("part"), short.column("id"), copies)
    _stream(con, cfg, streamed, wanted)
    selected = {s: (docs, tokens, extra) for s, docs, tokens, extra in con.execute(
        "SELECT stratum, count(*), sum(copies * tokens), sum(copies - 1) FROM taken JOIN planned USING (part, id) "
        "GROUP BY stratum").fetchall()}
    reader = con.sql("SELECT id, part, stratum, coalesce(copies, 0) AS copies, CASE WHEN copies IS NULL THEN "
                     "coalesce(excluded_by, 'over_budget') END AS reason FROM planned LEFT JOIN taken "
                     "USING (part, id) ORDER BY part, id").to_arrow_reader(BATCH)
    for batch in reader:
        write(pa.Table.from_batches([batch]).cast(SELECTION_SCHEMA))
    strata = []
    for s in names:
        docs, pool, candidates, candidate_tokens = aggregates[s]
        chosen, tokens, extra = (int(x or 0) for x in selected.get(s, (0, 0, 0)))
        strata.append({"stratum": s, "pool_docs": docs, "pool_tokens": int(pool),
                       "weight": wanted[s] / cfg.budget_tokens, "target_tokens": round(wanted[s], 3),
                       "candidates": candidates, "candidate_tokens": int(candidate_tokens), "selected_docs": chosen,
                       "selected_tokens": tokens, "upsampled_copies": extra,
                       "shortfall_tokens": max(0, int(np.ceil(wanted[s])) - tokens)})
    return strata


def _stream(con, cfg: MixtureConfig, strata: list[str], wanted: dict[str, float]) -> None:
    """The strata whose candidates exceed their target, streamed in one sorted pass."""
    if not strata:
        return
    con.register("streamed_strata", pa.table({"stratum": pa.array(strata, pa.string())}))
    # numpy's order in sampling.fill: best score first (NaN last), then the seeded key, then part and id
    best = "order_score IS NULL OR isnan(order_score), order_score DESC, " if cfg.top_k_by else ""
    reader = con.sql(f"SELECT stratum, tokens, part, id FROM planned WHERE excluded_by IS NULL AND stratum IN "
                     f"(SELECT stratum FROM streamed_strata) ORDER BY stratum, {best}tiebreak, part, id"
                     ).to_arrow_reader(BATCH)
    writer = con.cursor()  # inserts beside the open stream
    greedy = None
    for batch in reader:
        keys = batch.column(0).to_numpy(zero_copy_only=False)
        tokens = batch.column(1).to_numpy(zero_copy_only=False).astype(np.int64)
        parts, ids = batch.column(2), batch.column(3)
        starts = [0] + (np.flatnonzero(keys[1:] != keys[:-1]) + 1).tolist() + [len(keys)]
        for a, b in zip(starts, starts[1:]):
            if greedy is None or greedy[0] != keys[a]:
                _close(writer, greedy)
                greedy = (keys[a], _Greedy(wanted[keys[a]]))
            take = greedy[1].feed(tokens[a:b], parts.slice(a, b - a), ids.slice(a, b - a))
            where = pa.array(np.flatnonzero(take) + a)
            _insert(writer, parts.take(where), ids.take(where), np.ones(len(where), dtype=np.int64))
    _close(writer, greedy)
    con.unregister("streamed_strata")


def _close(con, greedy) -> None:
    if greedy is not None and (last := greedy[1].closest()) is not None:
        _insert(con, pa.array([last[0]]), pa.array([last[1]]), np.ones(1, dtype=np.int64))


def _insert(con, parts, ids, copies: np.ndarray) -> None:
    chosen = pa.table({"part": parts, "id": ids, "copies": pa.array(copies, pa.int64())})
    chosen = chosen.filter(pa.array(copies > 0))
    if chosen.num_rows:
        con.register("chosen", chosen)
        con.execute("INSERT INTO taken SELECT part, id, copies FROM chosen")
        con.unregister("chosen")
