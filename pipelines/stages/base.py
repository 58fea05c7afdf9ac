"""The stage contract: a plain function over a batch of one shard's documents, knowing nothing of engines.

`run(docs, cfg) -> StageResult`. It must not change its input dicts (outputs may still be buffered
for writing) and its output must not depend on how the shard was cut into batches.
"""

from dataclasses import dataclass, field


@dataclass
class StageResult:
    docs: list[dict] = field(default_factory=list)  # kept (and possibly rewritten) documents
    rejects: list[dict] = field(default_factory=list)  # rows of documents.REJECT_SCHEMA
    errors: list[dict] = field(default_factory=list)  # rows of documents.ERROR_SCHEMA
    metrics: dict[str, float] = field(default_factory=dict)  # extra counters for the stats table
