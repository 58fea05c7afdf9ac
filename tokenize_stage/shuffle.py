"""The release-level step of the tokenize stage (one task): pack every part's leftover pieces
together (best-fit decreasing), then draw the one seeded permutation all samples are written in.

  _packed, _samples, _provenance /leftovers.*   the samples packed from the leftovers (staging.py)
  _plan/order.json                               the staged files in order, with their sample counts
  _plan/order.npy                                position in the release -> staged sample (global id)

A sample's global id counts the staged files in `order.json`'s order; the permutation depends only on
the seed and the number of samples, never on workers or runner.
"""

from dataclasses import dataclass
from io import BytesIO

import fsspec
import numpy as np

from pipelines import io
from tokenize_stage.config import TokenizeConfig
from tokenize_stage.packing import Piece, pack_leftovers
from tokenize_stage.staging import StagedSamples, packed_path
from tokenize_stage.task import NAME, pad_id, token_dtype
from tokenize_stage.tokenizers import load_tokenizer

LEFTOVERS = "leftovers"


@dataclass(frozen=True)
class ShuffleTask:
    output: str
    cfg: TokenizeConfig
    parts: tuple[str, ...]
    parts_fingerprint: str  # of every part's tokenize task
    part: str = "tokenize-shuffle"
    input_file: str = ""

    @property
    def marker(self) -> str:
        return io.join(self.output, NAME, "_SUCCESS.shuffle")

    def fingerprint(self) -> str:
        return io.sha256_json({"parts": self.parts_fingerprint, "seed": self.cfg.seed})

    def run(self) -> dict:
        folder = io.join(self.output, NAME)
        tok = load_tokenizer(self.cfg.tokenizer)
        dtype = token_dtype(self.cfg, tok.vocab_size)
        pieces, meta = [], []
        for part in self.parts:
            rows = io.read_table(io.join(folder, "_leftover", f"{part}.parquet")).to_pylist()
            tokens = io.read_array(io.join(folder, "_leftover", f"{part}.bin"), dtype)
            at = 0
            for row in rows:
                pieces.append(Piece(len(meta), row["doc_token_start"], tokens[at : at + row["tokens"]]))
                meta.append((row["doc_id"], row["source"], row["url"], row["doc_tokens"]))
                at += row["tokens"]
        staged = StagedSamples(folder, LEFTOVERS, self.cfg.seq_len, dtype, pad_id(tok))
        for sample in pack_leftovers(pieces, self.cfg.seq_len):
            staged.add(sample, meta.__getitem__)
        totals = staged.commit()
        names = [*self.parts, LEFTOVERS]
        counts = [staged_samples(folder, name, self.cfg.seq_len, dtype) for name in names]
        order = np.random.default_rng(self.cfg.seed).permutation(sum(counts)).astype(np.int64)
        io.write_bytes_atomic(io.join(folder, "_plan", "order.npy"), npy_bytes(order))
        files = [{"name": n, "samples": c} for n, c in zip(names, counts)]
        io.write_json_atomic(io.join(folder, "_plan", "order.json"), {"seed": self.cfg.seed, "files": files})
        return {NAME: {"leftover_pieces": len(pieces), "leftover_samples": totals["samples"],
                       "leftover_padding": totals["padding"], "samples": int(sum(counts))}}


def staged_samples(folder: str, name: str, seq_len: int, dtype: np.dtype) -> int:
    fs, path = fsspec.core.url_to_fs(packed_path(folder, name))
    return fs.size(path) // (seq_len * np.dtype(dtype).itemsize)


def npy_bytes(array: np.ndarray) -> bytes:
    buf = BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def read_order(folder: str) -> tuple[list[dict], np.ndarray]:
    """(staged files with their sample counts, the permutation)."""
    files = io.read_json(io.join(folder, "_plan", "order.json"))["files"]
    with fsspec.open(io.join(folder, "_plan", "order.npy"), "rb") as fh:
        order = np.load(BytesIO(fh.read()), allow_pickle=False)
    return files, order
