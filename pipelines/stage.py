"""The stage contract. A stage is one `Stage` in `pipelines.registry.STAGES` (pipeline order):

    name      its key under `stages:`, its output folder `OUT/<name>/` and the `stage` of its stats and rejects
    config    its pydantic model; a stage whose block is absent from the config does not run
    check     checks beyond types (files exist, columns are produced), run before any work starts;
              raises ConfigError with the key relative to the stage's block
    resolve   the config as it will run, when that depends on more than the YAML (globs expanded);
              the manifest and the fingerprints record what it returns

and either, for work done document by document inside the per-shard task:

    run       run(batch, cfg) -> StageResult over a batch of one shard's documents
    columns   the columns it adds to documents (it never renames or drops one); a function of its config
              when they depend on it (score's classifiers)
    produces  which of those columns its config fills (default: all of them)
    prepare   optional: prepare(cfg, ctx) -> (cfg, phases), for a stage that needs every part's documents
              first (select's top_fraction thresholds): phases to run before its documents phase (they
              may update `ctx.upstream`'s fingerprints) and the config its documents run with. When it
              returns phases, the stage starts a new documents phase; with none it runs with those before it

or, for work over the whole release (maps, shuffles through storage, reduces):

    phases    phases(ctx) -> list[Phase], in order; they read and then update `ctx.upstream`

Optional: `views` (DuckDB views over its files, for `gristmill stats`), `report` (sections of the
HTML report).
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from pydantic import BaseModel

if TYPE_CHECKING:  # for annotations only
    from pipelines.config import ReleaseConfig
    from pipelines.shard_task import ShardTask


@dataclass
class StageResult:
    """What `run` returns for one batch. It must not change its input dicts (outputs may still be
    buffered for writing), and its output must not depend on how the shard was cut into batches."""

    docs: list[dict] = field(default_factory=list)  # kept (and possibly rewritten) documents
    rejects: list[dict] = field(default_factory=list)  # rows of documents.REJECT_SCHEMA
    errors: list[dict] = field(default_factory=list)  # rows of documents.ERROR_SCHEMA
    metrics: dict[str, float] = field(default_factory=dict)  # extra counters for the stats table


@dataclass(frozen=True)
class Upstream:
    """Where a phase reads a part's documents: the folder of the last stage that wrote them (None: the
    input file itself), with that stage's fingerprint, which becomes part of the phase's own."""

    stage: str | None
    fingerprint: str


@dataclass(frozen=True)
class Phase:
    """A step of the release whose tasks run on the runner. Every task follows `phase.run_task`'s
    protocol (part, input_file, marker, fingerprint(), run()). `after` runs on the driver once every
    task of the phase succeeded."""

    name: str  # "dedup map": the progress bar, the run log, the Ray task name
    stages: tuple[str, ...]  # whose runner resources its tasks get (the most any of them asks for)
    tasks: list
    after: Callable[[], None] | None = None


@dataclass
class PhaseContext:
    release: "ReleaseConfig"
    shards: list["ShardTask"]  # one per input file, numbered by its place in the sorted input list
    upstream: dict[str, Upstream]  # part -> what the next phase reads

    def config(self, stage: str):
        return getattr(self.release.stages, stage)


@dataclass(frozen=True)
class CheckContext:
    release: "ReleaseConfig"
    before: tuple[tuple["Stage", Any], ...]  # the configured stages that run earlier, with their configs

    def produced(self) -> set[str]:
        """Columns filled by the stages configured before this one."""
        return {c for stage, cfg in self.before for c in stage.produced(cfg)}


def _no_check(cfg, ctx: CheckContext) -> None:
    return None


def _as_is(cfg, ctx: CheckContext):
    return cfg


@dataclass(frozen=True)
class Stage:
    name: str
    config: type[BaseModel]
    check: Callable[[Any, CheckContext], None] = _no_check
    resolve: Callable[[Any, CheckContext], Any] = _as_is
    # per-document stages
    run: Callable[[list[dict], Any], StageResult] | None = None
    columns: tuple[pa.Field, ...] | Callable[[Any], tuple[pa.Field, ...]] = ()  # or columns(cfg), named in it
    produces: Callable[[Any], Iterable[str]] | None = None
    reads_html: bool = False  # takes raw HTML records (from HTML_FORMATS sources) rather than text
    prepare: Callable[[Any, PhaseContext], tuple[Any, list[Phase]]] | None = None
    # global stages
    phases: Callable[[PhaseContext], list[Phase]] | None = None
    # inspection
    views: tuple[tuple[str, str], ...] = ()  # (DuckDB view, glob under OUT/<name>/)
    report: Callable[[Any, str], list[str]] | None = None  # (DuckDB connection, OUT) -> HTML sections

    @property
    def per_document(self) -> bool:
        return self.run is not None

    def fields(self, cfg) -> tuple[pa.Field, ...]:
        """The columns it adds under `cfg`."""
        return self.columns(cfg) if callable(self.columns) else self.columns

    def produced(self, cfg) -> set[str]:
        return set(self.produces(cfg)) if self.produces is not None else {c.name for c in self.fields(cfg)}


def bucket_name(bucket: int) -> str:
    """A global stage's shuffle bucket as its files and markers name it (release.BUCKET finds it there)."""
    return f"bucket-{bucket:05d}"
