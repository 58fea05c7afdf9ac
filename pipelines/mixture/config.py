"""The mixture stage's config: DataMan-style budgeted selection, and CLIMB's clusters and search."""

from typing import Literal

from pydantic import AliasChoices, Field, field_validator, model_validator

from pipelines.readers import SourceConfig
from pipelines.spill import NOT_FINGERPRINTED, SpillConfig
from pipelines.stages.select import ScoreColumn, SelectRule
from scorers._config import StrictModel
from scorers.embed import EmbedConfig


class PruneConfig(StrictModel):
    """CLIMB's pruning: clusters whose mean quality score is below `min` are dropped (their documents
    become `pruned_cluster` rejects)."""

    column: ScoreColumn = Field(description="the quality score")
    min: float = Field(description="lowest mean kept")


class ProxyConfig(StrictModel):
    """How a candidate mixture is scored (lower is better).

    ngram: a byte n-gram LM trained on `train_chars` characters drawn from the mixture, scored in bits
      per byte on the `validation` source (built in, CPU only).
    command: an external trainer. For each run gristmill writes DIR/mixture.json (weights per cluster,
      run id, validation paths) and DIR/train.jsonl (the drawn sample), runs `command` with
      GRISTMILL_PROXY_DIR=DIR, and reads DIR/result.json {"objective": float}. A non-zero exit, a
      missing or bad result, or running past `timeout_seconds` is recorded and the search goes on."""

    kind: Literal["ngram", "command"] = Field("ngram", description="ngram (built in) | command (an external "
                                                                   "trainer)")
    validation: SourceConfig = Field(description="the target set the proxy is measured on (any source)")
    order: int = Field(5, ge=1, description="ngram: the LM's order in bytes")
    smoothing: Literal["witten_bell", "dirichlet"] = Field(
        "witten_bell", description="ngram: interpolated Witten-Bell (back-off weight = distinct next bytes "
                                   "of the context) or Dirichlet (fixed weight 2)")
    train_chars: int = Field(300_000, ge=1000, description="characters drawn from a candidate mixture per run")
    command: list[str] | None = Field(None, description="command: [program, args...]; runs with "
                                                        "GRISTMILL_PROXY_DIR set, writes result.json")
    timeout_seconds: float = Field(600, gt=0, description="command: a run past this is recorded as failed")

    @model_validator(mode="after")
    def _command_given(self):
        if self.kind == "command" and not self.command:
            raise ValueError("kind: command needs `command: [program, args...]`")
        return self


class SearchConfig(StrictModel):
    """CLIMB's iterative bootstrapping: `runs[0]` proxy runs on sampled mixtures, then per iteration a
    LightGBM predictor ranks `candidates` samples, and `runs[i]` are drawn at random from its `top`
    best. The final mixture is the predictor's best. Samples come from a Dirichlet around the clusters'
    token shares, and (`flat_share`, `sparse_share` of them) from broad draws that can give a large
    weight to a small cluster."""

    runs: list[int] = Field([64, 32, 16], min_length=1, description="proxy runs per iteration")
    candidates: int = Field(2000, ge=1, description="mixtures ranked by the predictor per iteration")
    top: int = Field(100, ge=1, description="the next runs are drawn from this many best-predicted")
    concentration: float = Field(1.0, gt=0, description="Dirichlet alpha = concentration x clusters x token "
                                                        "shares")
    flat_share: float = Field(0.25, ge=0, le=1, description="share of the samples drawn from a flat Dirichlet "
                                                            "(alpha 1 per cluster), blind to token shares")
    sparse_share: float = Field(0.25, ge=0, le=1, description="share of the samples that put all weight on 1 "
                                                              "to `sparse_clusters` random clusters (flat "
                                                              "Dirichlet among them)")
    sparse_clusters: int = Field(3, ge=1, description="sparse samples: at most this many clusters")
    proxy: ProxyConfig = Field(description="what a run measures")
    seed: int = Field(0, description="seed of the draws")

    @model_validator(mode="after")
    def _shares_fit(self):
        if self.flat_share + self.sparse_share > 1:
            raise ValueError(f"flat_share + sparse_share is {self.flat_share + self.sparse_share:g} > 1")
        return self


class ClimbConfig(StrictModel):
    """CLIMB ("CLustering-based Iterative Data Mixture Bootstrapping", Diao et al. 2025): embed, cluster,
    search cluster weights with a proxy; strata become the (super-)clusters."""

    embed: EmbedConfig = Field(EmbedConfig(), description="document embeddings (stored per shard as float16)")
    clusters: int = Field(16, ge=2, description="k-means k (the paper: 1000 at web scale)")
    train_sample: int = Field(100_000, ge=10, description="k-means is trained on this many documents, applied "
                                                          "to all")
    iterations: int = Field(25, ge=1, description="k-means iterations")
    prune: PruneConfig | None = Field(None, description="drop low-quality clusters")
    merge_distance: float | None = Field(None, gt=0, description="merge clusters whose centroids are closer "
                                                                 "(paper: 1.5)")
    search: SearchConfig | None = Field(None, description="search the weights; absent: the clusters' token "
                                                          "shares (or `weights`)")
    seed: int = Field(0, description="seed of k-means and of the documents' order in a cluster")


class MixtureConfig(StrictModel):
    """Sample the release to a token budget, stratum by stratum (DataMan's recipe; CLIMB's strata are
    clusters). A stratum's share is its `weights` entry, else its token share measured as `shares`
    says. Inside a stratum the candidates (documents passing `where`) are taken best-first by the sum
    of `top_k_by` columns, or in a seeded random order (sampling without replacement), until its share
    of the budget is filled; a stratum that runs short is upsampled with replacement, and that is
    recorded."""

    budget_tokens: int = Field(ge=1, validation_alias=AliasChoices("budget_tokens", "token_budget"),
                               description="the budget, in the release tokenizer's tokens")
    strata: list[Literal["source", "domain", "cluster"]] = Field(["source"], description="any of source, domain, "
                                                                                         "cluster (CLIMB); []: one "
                                                                                         "stratum, `all`")
    shares: Literal["after_where", "before_where"] = Field(
        "after_where", description="without `weights`, a stratum's share is its token share of the candidates "
                                   "(after_where: the documents passing `where`, as DataMan mixes the selected "
                                   "data) or of all documents entering the stage (before_where: the old default; "
                                   "a stratum with few candidates is then upsampled); CLIMB's search starts "
                                   "from the same shares and trains its proxies on candidates only")
    max_repeats: int = Field(4, ge=1, description="at most this many copies of a document (epochs) when "
                                                  "upsampling")
    climb: ClimbConfig | None = Field(None, description="embed, cluster, search weights: strata become [cluster]")
    where: list[SelectRule] = Field(default_factory=list, description="the candidates: select rules without "
                                                                      "top_fraction, e.g. {column: "
                                                                      "dataman_overall, min: 5}")
    top_k_by: list[ScoreColumn] = Field(default_factory=list, description="score columns whose sum orders a "
                                                                          "stratum best-first; empty: seeded "
                                                                          "random order")
    weights: dict[str, float] | None = Field(None, description="stratum key (strata values joined by `/`, e.g. "
                                                               "web/medicine) -> weight")
    upsample: bool = Field(True, description="false: a short stratum stays short (the shortfall is recorded)")
    seed: int = Field(0, description="seed of the sampling and the tie-breaks")
    memory: SpillConfig = Field(SpillConfig(), json_schema_extra=NOT_FINGERPRINTED,
                                description="the plan's DuckDB: its memory limit and spill folder (the plan "
                                            "holds one batch of documents in Python, CLIMB's k-means its "
                                            "`train_sample`)")

    @field_validator("where")
    @classmethod
    def _no_top_fraction(cls, rules: list[SelectRule]) -> list[SelectRule]:
        if any(r.top_fraction is not None for r in rules):
            raise ValueError("top_fraction is a select-stage rule; use min/max/values here")
        return rules

    @field_validator("weights")
    @classmethod
    def _non_negative(cls, weights: dict[str, float] | None) -> dict[str, float] | None:
        if weights is not None and (any(w < 0 for w in weights.values()) or not sum(weights.values()) > 0):
            raise ValueError("weights must be >= 0 with a positive sum")
        return weights
