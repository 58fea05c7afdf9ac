"""The mixture phase as runner tasks: features per shard, (CLIMB: k-means, assign per shard, see
clusters.py), one global plan, apply per shard.

features  OUT/mixture/_features/part-N.parquet: per document its id, source, domain, token count
          (with the release's tokenizer), whether it passes `where`, its top-k order score and its
          seeded tie-break key
plan      OUT/mixture/_plan/: the stratum of every document, each stratum's pool tokens, weight, target
          and what was taken (strata.parquet, plan.json), and the copies of each selected document
          (selection.parquet, sorted by part and id; more than one copy = upsampled). It runs in DuckDB
          under `memory` (plan.py): its memory does not grow with the release
apply     per shard: selected documents written `copies` times in their upstream order; the others
          become rejects (`where.<column>` or `over_budget`). Stats count `upsampled` rows, so the
          funnel still adds up: docs_in + upsampled = docs_out + rejected + errors.
"""

from dataclasses import dataclass

import pyarrow as pa

from pipelines import io
from pipelines.documents import reject
from pipelines.mixture import sampling
from pipelines.mixture.climb_plan import plan_clusters
from pipelines.mixture.config import MixtureConfig
from pipelines.mixture.plan import SELECTION_SCHEMA, rows_of, select
from pipelines.phase import ShardOutputs, fingerprint_data
from pipelines.shard_task import Documents, OfShard, ShardTask
from pipelines.spill import duckdb_spilling
from pipelines.stage import Upstream
from pipelines.stages.select import SelectRule, outside
from scorers.embed import embed
from tokenize_stage import token_cache
from tokenize_stage.tokenizers import load_tokenizer

NAME = "mixture"
FEATURE_SCHEMA = pa.schema([("id", pa.string()), ("part", pa.string()), ("source", pa.string()),
                            ("domain", pa.string()), ("tokens", pa.int64()), ("excluded_by", pa.string()),
                            ("order_score", pa.float64()), ("quality", pa.float64()), ("tiebreak", pa.uint64())])
EMBEDDING_SCHEMA = pa.schema([("id", pa.string()), ("embedding", pa.binary())])  # float16, little-endian
STRATA_SCHEMA = pa.schema([("stratum", pa.string()), ("pool_docs", pa.int64()), ("pool_tokens", pa.int64()),
                           ("weight", pa.float64()), ("target_tokens", pa.float64()), ("candidates", pa.int64()),
                           ("candidate_tokens", pa.int64()), ("selected_docs", pa.int64()),
                           ("selected_tokens", pa.int64()), ("upsampled_copies", pa.int64()),
                           ("shortfall_tokens", pa.int64())])
SELECTION_GROUP = 65_536  # rows per row group of selection.parquet: apply reads its part's groups only


def _path(output: str, *parts: str) -> str:
    return io.join(output, NAME, *parts)


def excluded_by(doc: dict, rules: list[SelectRule]) -> str | None:
    """The first `where` rule the document fails, as `where.<column>`; None for a candidate."""
    return next((f"where.{rule.column}" for rule in rules if outside(rule, doc.get(rule.column))), None)


@dataclass(frozen=True)
class MixtureMapTask(OfShard):
    """Per shard: token counts (with the release's tokenizer), `where` and top-k columns, embeddings."""

    shard: ShardTask
    cfg: MixtureConfig
    tokenizer: str  # the release's tokenizer: the budget is in its tokens
    upstream: Upstream

    @property
    def marker(self) -> str:
        return _path(self.shard.output, f"_SUCCESS.features.{self.part}")

    def fingerprint(self) -> str:
        return io.sha256_json({"upstream": self.upstream.fingerprint, "mixture": fingerprint_data(self.cfg),
                               "tokenizer": self.tokenizer, "features": 2})  # 2: with the tie-break key

    def run(self) -> dict:
        out, cfg, part = self.shard.output, self.cfg, self.part
        tok = load_tokenizer(self.tokenizer)
        climb = cfg.climb
        embed_marker = _path(out, f"_SUCCESS.embed.{part}")
        embed_fp = io.sha256_json({"upstream": self.upstream.fingerprint,
                                   "embed": climb and climb.embed.model_dump(mode="json")})
        embed_now = climb is not None and not io.marker_matches(embed_marker, embed_fp)  # outlive clustering changes
        rows, vectors = [], []
        docs = Documents(self.shard, self.upstream.stage, record=True)
        token_ids = token_cache.CacheWriter(out, part, self.tokenizer)  # the tokenize stage reuses them
        for batch in docs.batches():
            texts = [d.get("text") or "" for d in batch]
            encoded = tok.encode_batch(texts)
            token_ids.write(batch, encoded)
            counts = [len(ids) for ids in encoded]
            if embed_now:
                vectors += [{"id": d["id"], "embedding": v.astype("<f2").tobytes()}
                            for d, v in zip(batch, embed(texts, climb.embed))]
            tiebreak = sampling.seeded_keys([d["id"] for d in batch], cfg.seed).tolist()
            for doc, n, key in zip(batch, counts, tiebreak):
                rows.append({"id": doc["id"], "part": part, "source": doc.get("source"), "domain": doc.get("domain"),
                             "tokens": n, "excluded_by": excluded_by(doc, cfg.where),
                             "order_score": float(sum(doc.get(c) or 0 for c in cfg.top_k_by)) if cfg.top_k_by else None,
                             "quality": doc.get(climb.prune.column) if climb and climb.prune else None,
                             "tiebreak": key})
        docs.close()
        token_ids.commit()
        if embed_now:
            io.write_table_atomic(_path(out, "_embeddings", f"{part}.parquet"), vectors, EMBEDDING_SCHEMA)
            io.write_marker(embed_marker, embed_fp)
        io.write_table_atomic(_path(out, "_features", f"{part}.parquet"), rows, FEATURE_SCHEMA)
        return {}


@dataclass(frozen=True)
class MixturePlanTask:
    """The one global step: the stratum and copies of every document, and each stratum's budget."""

    output: str
    cfg: MixtureConfig
    features_fingerprint: str
    inputs: tuple[tuple[ShardTask, str | None], ...] = ()  # (shard, upstream stage): where texts are read
    part: str = "mixture-plan"
    input_file: str = ""

    @property
    def marker(self) -> str:
        return _path(self.output, "_SUCCESS.plan")

    def fingerprint(self) -> str:
        return self.features_fingerprint

    def run(self) -> dict:
        return run_plan(self)


@dataclass(frozen=True)
class MixtureApplyTask(OfShard):
    """Per shard: selected documents written `copies` times in their upstream order, the others rejected."""

    shard: ShardTask
    upstream: Upstream
    plan_fingerprint: str
    clusters: bool = False  # add the `cluster` column (CLIMB)

    @property
    def marker(self) -> str:
        return _path(self.shard.output, f"_SUCCESS.{self.part}")

    def fingerprint(self) -> str:
        return self.plan_fingerprint

    def run(self) -> dict:
        chosen = {r["id"]: r for r in io.read_table(_path(self.shard.output, "_plan", "selection.parquet"),
                                                     filters=[("part", "=", self.part)]).to_pylist()}
        docs = Documents(self.shard, self.upstream.stage)
        schema = docs.schema()
        if self.clusters:
            schema = schema.append(pa.field("cluster", pa.string()))
        outputs = ShardOutputs(self.shard, NAME, schema)
        upsampled = 0
        for doc in docs:
            row = chosen[doc["id"]]
            if row["copies"]:
                outputs.write(docs=[{**doc, "cluster": row["stratum"]} if self.clusters else doc] * row["copies"])
                upsampled += row["copies"] - 1
            else:
                outputs.write(rejects=[reject(doc, NAME, row["reason"], row["stratum"])])
        return {NAME: outputs.commit(docs_in=docs.count, upsampled=upsampled)}


def run_plan(task: MixturePlanTask) -> dict:
    out, cfg = task.output, task.cfg
    climb_report = None
    with duckdb_spilling(cfg.memory, out) as con:
        if not task.inputs:
            con.register("documents", FEATURE_SCHEMA.append(pa.field("row_in_part", pa.int64())).empty_table())
        elif cfg.climb is None:
            files = [_path(out, "_features", f"{shard.part}.parquet") for shard, _ in task.inputs]
            con.execute(f"CREATE VIEW documents AS {rows_of(files)}")
        else:
            weights, climb_report = plan_clusters(con, out, task.inputs, cfg)
            cfg = cfg.model_copy(update={"weights": weights})
            con.execute("CREATE VIEW documents AS SELECT * FROM clustered")
        strata, selection = select(con, cfg, "documents")
        io.write_batches(_path(out, "_plan", "selection.parquet"), selection, SELECTION_SCHEMA, SELECTION_GROUP)
    io.write_table_atomic(_path(out, "_plan", "strata.parquet"), strata, STRATA_SCHEMA)
    summary = {"budget_tokens": task.cfg.budget_tokens, "strata": task.cfg.strata,
               "selected_tokens": sum(s["selected_tokens"] for s in strata),
               "upsampled_copies": sum(s["upsampled_copies"] for s in strata),
               "short_strata": [s["stratum"] for s in strata
                                if s["upsampled_copies"] or s["shortfall_tokens"] > 0.01 * s["target_tokens"]]}
    io.write_json_atomic(_path(out, "_plan", "plan.json"), summary)
    if climb_report is not None:
        io.write_json_atomic(_path(out, "mixture.json"), {**climb_report, "sampled": summary})
    return {}
