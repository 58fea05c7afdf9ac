"""A DuckDB for one global step (dedup reduce and cluster, mixture plan): its memory capped, the rest
spilled to disk, so the step's peak memory follows the setting, not the number of documents."""

import contextlib
import os
import shutil
import tempfile

import duckdb
from pydantic import Field

from pipelines import io
from scorers._config import StrictModel

NOT_FINGERPRINTED = {"fingerprint": False}  # how a step runs, not what it outputs: changing it reruns nothing


def not_fingerprinted(field) -> bool:
    """A config field marked NOT_FINGERPRINTED (left out of fingerprints, the manifest's config and its hash)."""
    return (field.json_schema_extra or {}).get("fingerprint") is False


class SpillConfig(StrictModel):
    """Memory of a global step's DuckDB: `memory_limit` in DuckDB's units ("1GB", "512MB"); what does not
    fit is spilled to a private folder under `spill_dir` (default: the system's temporary folder, $TMPDIR),
    removed when the step ends."""

    memory_limit: str = Field("1GB", description="DuckDB memory_limit of the step")
    spill_dir: str | None = Field(None, description="a local folder with room for the spill; default $TMPDIR")
    threads: int | None = Field(None, ge=1, description="DuckDB threads; default: the machine's cores")


@contextlib.contextmanager
def duckdb_spilling(cfg: SpillConfig, *roots: str):
    """The step's DuckDB, reading the files under `roots` on fsspec storage (s3://) too."""
    if cfg.spill_dir:
        os.makedirs(cfg.spill_dir, exist_ok=True)
    folder = tempfile.mkdtemp(prefix="gristmill-spill-", dir=cfg.spill_dir)
    settings = {"memory_limit": cfg.memory_limit, "temp_directory": folder}
    if cfg.threads:
        settings["threads"] = cfg.threads
    con = duckdb.connect(config=settings)
    for root in roots:
        io.register_filesystem(con, root)
    try:
        yield con
    finally:
        con.close()
        shutil.rmtree(folder, ignore_errors=True)
