"""CLIMB's k-means at any scale, between the mixture features and the plan:

kmeans   one task: the centroids, trained on a seeded sample of `train_sample` embeddings (drawn over
         all documents in (part, id) order; only the sample is held), to OUT/mixture/_kmeans.json
assign   per shard: each document's nearest centroid, its similarity to it (dot product) and its seeded
         order key inside a cluster, beside its features in OUT/mixture/_assigned/part-N.parquet

The plan then reads per-cluster aggregates and a few documents per cluster (climb_plan.py).
"""

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines import io
from pipelines.mixture import climb, sampling
from pipelines.mixture.config import MixtureConfig
from pipelines.shard_task import OfShard, ShardTask

NAME = "mixture"


def _path(output: str, *parts: str) -> str:
    return io.join(output, NAME, *parts)


def vectors_of(table: pa.Table) -> np.ndarray:
    """The float16 embedding column as a float32 matrix."""
    blobs = table.column("embedding").combine_chunks()
    if not len(blobs):
        return np.zeros((0, 8), dtype=np.float32)
    _, offsets, data = blobs.buffers()
    offsets = np.frombuffer(offsets, dtype=np.int32)[blobs.offset:blobs.offset + len(blobs) + 1]
    data = np.frombuffer(data, dtype=np.uint8)[offsets[0]:offsets[-1]]  # equal lengths: contiguous vectors
    return data.view("<f2").reshape(len(blobs), -1).astype(np.float32)


def read_centroids(output: str) -> tuple[np.ndarray, list[str]]:
    found = io.read_json(_path(output, "_kmeans.json"))
    return np.asarray(found["centroids"], dtype=np.float32), found["notes"]


@dataclass(frozen=True)
class KmeansTask:
    """The centroids, from a seeded sample of the release's embeddings."""

    output: str
    cfg: MixtureConfig
    features_fingerprint: str
    parts: tuple[str, ...]
    part: str = "mixture-kmeans"
    input_file: str = ""

    @property
    def marker(self) -> str:
        return _path(self.output, "_SUCCESS.kmeans")

    def fingerprint(self) -> str:
        return self.features_fingerprint

    def run(self) -> dict:
        c = self.cfg.climb
        files = [_path(self.output, "_embeddings", f"{p}.parquet") for p in sorted(self.parts)]
        counts = [io.read_num_rows(f) for f in files]
        n, k, notes = sum(counts), c.clusters, []
        if n < k:
            notes.append(f"{n} documents for {k} clusters: k reduced to {max(n, 1)}")
            k = max(n, 1)
        rows, start, train = climb.training_rows(n, c), 0, []
        for file, count in zip(files, counts):
            mine = rows[(rows >= start) & (rows < start + count)] - start
            start += count
            if len(mine):
                table = io.read_table(file)  # one part at a time; its rows taken in id order
                order = pc.sort_indices(table, sort_keys=[("id", "ascending")])
                train.append(vectors_of(table.take(order.take(pa.array(mine)))))
        centroids = climb.train(np.vstack(train), k, c) if train else np.zeros((0, 0), dtype=np.float32)
        io.write_json_atomic(_path(self.output, "_kmeans.json"),
                             {"centroids": centroids.astype(np.float32).tolist(), "notes": notes})
        return {"mixture_kmeans": {"documents": n, "trained_on": len(rows)}}


ASSIGNED_EXTRA = [("cluster", pa.int64()), ("climb_key", pa.uint64()), ("similarity", pa.float64())]


@dataclass(frozen=True)
class AssignTask(OfShard):
    """Per shard: every document's cluster, similarity to its centroid and seeded key, beside its features."""

    shard: ShardTask
    cfg: MixtureConfig
    features_fingerprint: str

    @property
    def marker(self) -> str:
        return _path(self.shard.output, f"_SUCCESS.assign.{self.part}")

    def fingerprint(self) -> str:
        return io.sha256_json({"kmeans": self.features_fingerprint, "part": self.part})

    def run(self) -> dict:
        out, part = self.shard.output, self.part
        features = io.read_table(_path(out, "_features", f"{part}.parquet"))
        embeddings = io.read_table(_path(out, "_embeddings", f"{part}.parquet"))
        if not embeddings.column("id").equals(features.column("id")):  # both written by the map in document order
            raise ValueError(f"{part}: the mixture embeddings do not match the features; rerun the mixture stage")
        vectors = vectors_of(embeddings)
        centroids, _ = read_centroids(out)
        labels = climb.assign(vectors, centroids) if len(vectors) else np.zeros(0, dtype=np.int64)
        similarity = [float(vectors[i] @ centroids[c]) for i, c in enumerate(labels.tolist())]
        ids = features.column("id").to_pylist()
        for (name, kind), values in zip(ASSIGNED_EXTRA, [labels, sampling.seeded_keys(ids, self.cfg.climb.seed),
                                                         similarity]):
            features = features.append_column(pa.field(name, kind), pa.array(values, kind))
        io.write_bytes_atomic(_path(out, "_assigned", f"{part}.parquet"), io.table_bytes(features))
        return {}
