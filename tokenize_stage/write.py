"""The tokenize stage's writers: task N writes the N-th of as many equal slices of the shuffled release
as there are parts, in every configured format, cut into shards of `shard_tokens` (`<part>-SSSSS`).

  _placement/<part>.parquet   where each staged sample went: shard, index in it, staged file and sample
  _meta/<part>.json           the files written per format, with sha256 and counts (for the manifest)
"""

from dataclasses import dataclass

import fsspec
import numpy as np
import pyarrow as pa

from pipelines import io
from pipelines.shard_task import OfShard, ShardTask
from tokenize_stage import formats
from tokenize_stage.config import TokenizeConfig
from tokenize_stage.shuffle import read_order
from tokenize_stage.staging import read_packed
from tokenize_stage.task import NAME, pad_id, token_dtype
from tokenize_stage.tokenizers import load_tokenizer

BLOCK = 1024  # samples gathered and written at a time
PLACEMENT_SCHEMA = pa.schema([("shard", pa.string()), ("index", pa.int64()), ("part", pa.string()),
                              ("sample", pa.int64())])


@dataclass(frozen=True)
class WriteTask(OfShard):
    shard: ShardTask
    cfg: TokenizeConfig
    slot: int  # which slice of the shuffled release
    slots: int
    shuffle_fingerprint: str

    @property
    def marker(self) -> str:
        return io.join(self.shard.output, NAME, f"_SUCCESS.write.{self.part}")

    def fingerprint(self) -> str:
        cfg = self.cfg
        return io.sha256_json({"shuffle": self.shuffle_fingerprint, "slot": [self.slot, self.slots],
                               "formats": cfg.formats, "shard_tokens": cfg.shard_tokens, "compress": cfg.compress})

    def run(self) -> dict:
        return write_slice(self)


def slice_of(samples: int, slot: int, slots: int) -> tuple[int, int]:
    """[lo, hi) of slot's slice: equal slices, over fewer slots when there are not 2 samples for each
    (a shard of one sample gives stock GPTDataset no window)."""
    slots = max(1, min(slots, samples // 2))
    return (samples * slot // slots, samples * (slot + 1) // slots) if slot < slots else (samples, samples)


def shard_bounds(n: int, per_shard: int) -> list[tuple[int, int]]:
    """Cuts [0, n) every `per_shard` samples; a last shard of one sample joins the one before it, since
    Megatron's GPTDataset gets no window out of a one-sequence dataset."""
    bounds = [(lo, min(lo + per_shard, n)) for lo in range(0, n, per_shard)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


def remove_outputs(folder: str, part: str) -> None:
    """This part's files from an earlier run (their count may differ now), and its shards in the layout
    before megatron/ (OUT/tokenize/part-NNNNN-SSSSS.bin/.idx)."""
    fs, root = fsspec.core.url_to_fs(folder)
    for pattern in (f"megatron/{part}-*", f"parquet/{part}-*", f"{part}-*.bin", f"{part}-*.bin.zst", f"{part}-*.idx"):
        for path in fs.glob(f"{root}/{pattern}"):
            fs.rm(path)
    if fs.exists(f"{root}/mds/{part}"):
        fs.rm(f"{root}/mds/{part}", recursive=True)


class PieceLengths:
    """A staged file's piece lengths per sample, kept as two numpy arrays rather than Python lists."""

    def __init__(self, column: pa.ChunkedArray):
        lists = column.combine_chunks()
        self.offsets = lists.offsets.to_numpy()
        self.values = lists.values.to_numpy()

    def __getitem__(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i] : self.offsets[i + 1]]


def write_slice(task: WriteTask) -> dict:
    cfg, part = task.cfg, task.part
    folder = io.join(task.shard.output, NAME)
    dtype = token_dtype(cfg, load_tokenizer(cfg.tokenizer).vocab_size)
    files, order = read_order(folder)
    lo, hi = slice_of(len(order), task.slot, task.slots)
    starts = np.cumsum([0] + [f["samples"] for f in files])
    ids = order[lo:hi]
    which = np.searchsorted(starts, ids, side="right") - 1
    local = ids - starts[which]
    used = sorted(set(which.tolist()))
    arrays = {f: read_packed(folder, files[f]["name"], cfg.seq_len, dtype) for f in used}
    tables = {f: io.read_table(io.join(folder, "_samples", f"{files[f]['name']}.parquet")) for f in used}
    tokens_of = {f: t.column("tokens").to_numpy() for f, t in tables.items()}
    lengths_of = {f: PieceLengths(t.column("lengths")) for f, t in tables.items()}
    del tables
    remove_outputs(folder, part)
    pad = pad_id(load_tokenizer(cfg.tokenizer))
    per_shard = max(2, -(-cfg.shard_tokens // cfg.seq_len))
    mds = formats.MdsWriter(folder, part, cfg.seq_len, dtype, per_shard * cfg.seq_len * dtype.itemsize + (1 << 20)) \
        if "mds" in cfg.formats and len(ids) else None
    written: dict[str, list[dict]] = {f: [] for f in cfg.formats}
    shards, placement = [], {"shard": [], "index": [], "part": [], "sample": []}
    names = np.array([f["name"] for f in files], dtype=object)
    for s, (a, b) in enumerate(shard_bounds(len(ids), per_shard)):
        name = f"{part}-{s:05d}"
        writers = {f: w for f, w in (("megatron", formats.MegatronShard(folder, name, cfg.compress)),
                                     ("parquet", formats.ParquetShard(folder, name))) if f in cfg.formats}
        tokens = pieces = eod = 0
        for lo in range(a, b, BLOCK):  # memory: one block of samples, whatever the shard size
            hi = min(lo + BLOCK, b)
            rows = np.empty((hi - lo, cfg.seq_len), dtype=dtype)
            for f in used:
                mask = which[lo:hi] == f
                rows[mask] = arrays[f][local[lo:hi][mask]]
            pairs = list(zip(which[lo:hi].tolist(), local[lo:hi].tolist()))
            lengths = [lengths_of[w][i] for w, i in pairs]
            tokens += int(sum(tokens_of[w][i] for w, i in pairs))
            pieces += sum(len(x) for x in lengths)
            eod += int(np.count_nonzero(rows == pad))
            for key, values in (("shard", [name] * (hi - lo)), ("index", np.arange(lo - a, hi - a)),
                                ("part", names[which[lo:hi]]), ("sample", local[lo:hi])):
                placement[key].append(values)
            for writer in [*writers.values(), *([mds] if mds else [])]:
                writer.write(rows, lengths)
        for f, writer in writers.items():
            written[f] += writer.close()
        shards.append({"shard": name, "samples": b - a, "tokens": tokens, "padding": (b - a) * cfg.seq_len - tokens,
                       "pieces": pieces, "eod": eod})
    if mds:
        written["mds"] = mds.close()
    columns = {k: np.concatenate(v) if v else np.empty(0, dtype=object if k in ("shard", "part") else np.int64)
               for k, v in placement.items()}
    table = pa.table({k: pa.array(v, type=PLACEMENT_SCHEMA.field(k).type) for k, v in columns.items()})
    io.write_bytes_atomic(io.join(folder, "_placement", f"{part}.parquet"), io.table_bytes(table))
    io.write_json_atomic(io.join(folder, "_meta", f"{part}.json"), {"part": part, "shards": shards, "files": written})
    return {NAME: {"shards": len(shards), "samples_written": len(ids)}}
