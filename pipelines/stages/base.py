"""The stage contract: a plain function over one shard's documents, knowing nothing of engines."""

from dataclasses import dataclass, field


@dataclass
class StageResult:
    docs: list[dict] = field(default_factory=list)  # kept (and possibly rewritten) documents
    rejects: list[dict] = field(default_factory=list)  # rows of documents.REJECT_SCHEMA
    errors: list[dict] = field(default_factory=list)  # rows of documents.ERROR_SCHEMA
    metrics: dict[str, float] = field(default_factory=dict)  # extra counters for the stats table
