"""The dedup stage's config."""

from typing import Annotated, Literal

from pydantic import Field, field_validator

from pipelines.spill import NOT_FINGERPRINTED, SpillConfig
from scorers._config import StrictModel

MIN_BUCKETS = 16  # `buckets: auto`: at least this many (a small release keeps the layout it always had)


class MinHashConfig(StrictModel):
    """Near duplicates by MinHash LSH over word n-gram shingles (14 x 8 = FineWeb's setting, aimed at
    Jaccard 0.75-0.8)."""

    enabled: bool = Field(True, description="find near duplicates (else exact copies only)")
    ngram: int = Field(5, ge=1, description="word n-gram shingles")
    num_perm: int = Field(112, ge=1, description="MinHash permutations (= bands x rows)")
    bands: int = Field(14, ge=1, description="LSH bands")
    rows: int = Field(8, ge=1, description="rows per band")
    seed: int = Field(1, description="seed of the permutations")
    lowercase: bool = Field(True, description="normalise: lowercase")
    normalize_digits: bool = Field(True, description="normalise: every digit becomes 0")
    strip_punctuation: bool = Field(True, description="normalise: punctuation dropped")
    verify: bool = Field(True, description="keep only candidate pairs whose exact shingle Jaccard >= "
                                           "verify_threshold (pairs of identical normalised text need no check)")
    verify_threshold: float = Field(0.7, ge=0, le=1, description="see verify")
    max_pairs_per_member: int = Field(
        16, ge=1, description="candidate pairs per band group: each member is paired with up to the group's first "
                              "this many members (earlier releases first, then smallest ids), so a group of n costs "
                              "at most n x this many pairs (not n^2/2) and groups of up to this + 1 members are "
                              "checked exhaustively; a pair missed here is still found through any other band the "
                              "two share")

    @field_validator("rows")
    @classmethod
    def _bands_times_rows(cls, rows: int, info) -> int:
        if "num_perm" in info.data and "bands" in info.data and info.data["bands"] * rows != info.data["num_perm"]:
            raise ValueError(f"bands x rows must equal num_perm ({info.data['bands']} x {rows} != "
                             f"{info.data['num_perm']})")
        return rows


class DedupConfig(StrictModel):
    """Exact and near-duplicate removal across the release (and earlier releases). Documents removed are
    rejects with `reason=duplicate`, `detail=exact|minhash` and `duplicate_of` = the kept id; which ones
    are removed depends on `cluster` and `keep`."""

    exact: bool = Field(True, description="remove exact copies (hash of the normalised text)")
    minhash: MinHashConfig = Field(MinHashConfig(), description="near duplicates")
    keep: Literal["first_id", "longest"] = Field("first_id", description="keep order: smallest id first, or most "
                                                                         "characters first (then smallest id)")
    cluster: Literal["anchored", "components"] = Field(
        "anchored", description="anchored: documents are visited in keep order (earlier releases first); a kept one "
                                "removes its (verified) near duplicates not yet removed, a removed one removes "
                                "nothing, so every removed document is a near duplicate of its duplicate_of. "
                                "components: connected components of all (verified) pairs, one kept per component "
                                "(A~B~C removes C for A even when A and C differ)")
    buckets: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto", description="band keys are hash-partitioned into this many shuffle files, one reduce task "
                                  "each; auto: one per input shard, at least 16, rounded up to a power of two "
                                  "(each reduce handles about one shard's band keys whatever the corpus size, and "
                                  "adding a few inputs rarely changes it, which would rerun every map); with "
                                  "`against`, the earlier release's number (keys must land in the same buckets)")
    against: list[str] = Field(default_factory=list,
                               description="earlier releases (folders or globs) whose documents are already "
                                           "shipped; a glob expands to the finished releases it matches, never "
                                           "this one, and may match nothing")
    max_union_find_edges: int = Field(5_000_000, ge=0, description="above this many candidate pairs the "
                                                                   "cluster step runs out of core: anchored "
                                                                   "entirely in DuckDB under `memory` (slower: "
                                                                   "DuckDB computes every pair's Jaccard), "
                                                                   "components by label propagation in DuckDB "
                                                                   "(its pairs still held in Python)")
    memory: SpillConfig = Field(SpillConfig(), description="DuckDB memory of the reduce and cluster steps (beyond "
                                                           "it they spill to disk); changing it reruns nothing",
                                json_schema_extra=NOT_FINGERPRINTED)
