"""`gristmill tokens verify OUT`: checks `OUT/tokenize` against its manifest. Per file, in order: it
exists and is not empty, its structure (sizes, the .idx as written, row counts), its sha256 (streamed),
then its content (token ids inside the vocabulary, padding is pad_id after each sample's tokens, one
pad_id per document end, counts as the manifest and the bookkeeping (`_placement`, `_samples`,
`_provenance`) say). Each problem is `<path>: <what>`; the first per file is kept."""

import struct

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines import io
from tokenize_stage.manifest import FORMAT
from tokenize_stage.megatron.writer import DTYPE_CODES, HEADER, index_bytes

ROWS = 4096  # samples per block read from a .bin


def verify(folder: str) -> list[str]:
    fs, root = fsspec.core.url_to_fs(folder)
    problems: dict[str, str] = {}

    def bad(rel: str, what: str) -> None:
        problems.setdefault(f"{folder.rstrip('/')}/{rel}", what)

    def ok(rel: str) -> bool:
        return f"{folder.rstrip('/')}/{rel}" not in problems

    try:
        m = io.read_json(f"{folder}/manifest.json")
    except (OSError, ValueError) as exc:
        return [f"{folder.rstrip('/')}/manifest.json: cannot be read ({type(exc).__name__}: {exc})"]
    if m.get("format") != FORMAT:
        bad("manifest.json", f"format {m.get('format')!r}, expected {FORMAT!r}")
    elif m.get("dtype") not in ("uint16", "int32"):
        bad("manifest.json", f"dtype {m.get('dtype')!r}, expected uint16 or int32")
    elif m["tokenizer"]["vocab_size"] - 1 > np.iinfo(m["dtype"]).max:
        bad("manifest.json", f"dtype {m['dtype']} cannot hold the vocabulary (vocab_size "
                             f"{m['tokenizer']['vocab_size']} > {np.iinfo(m['dtype']).max + 1})")
    elif missing := [k for k in ("seq_len", "pad_id", "eos", "totals", "shards", "files", "formats") if k not in m]:
        bad("manifest.json", f"no {', '.join(missing)}")
    elif not m["shards"]:
        bad("manifest.json", "no samples: every document was rejected, or none came in")
    if problems:
        return [f"{path}: {what}" for path, what in problems.items()]
    dtype, seq_len, pad, vocab = np.dtype(m["dtype"]), m["seq_len"], m["pad_id"], m["tokenizer"]["vocab_size"]
    shards = {s["shard"]: s for s in m["shards"]}
    for key in ("tokens", "samples", "padding", "pieces"):
        if (total := sum(s[key] for s in m["shards"])) != m["totals"][key]:
            bad("manifest.json", f"totals.{key} {m['totals'][key]} != {total} over the shards")
    for s in m["shards"]:
        if s["samples"] <= 0 or s["tokens"] + s["padding"] != s["samples"] * seq_len:
            bad("manifest.json", f"shard {s['shard']}: {s['samples']} samples, {s['tokens']} tokens + {s['padding']} "
                                 f"padding (expected > 0 samples of {seq_len} tokens)")

    entries = {e["path"]: e for f in m["formats"] for e in m["files"].get(f, [])}
    for rel in entries:
        if not fs.exists(f"{root}/{rel}"):
            bad(rel, "missing")
        elif fs.size(f"{root}/{rel}") == 0:
            bad(rel, "empty (0 bytes)")
    wanted = {"megatron": ["megatron/{}.bin", "megatron/{}.idx"], "parquet": ["parquet/{}.parquet"]}
    for rel in [p.format(s) for f in m["formats"] for p in wanted.get(f, []) for s in shards]:
        if rel not in entries:
            bad(rel, "not listed in the manifest's files")
    if "mds" in m["formats"] and "mds/index.json" not in entries:
        bad("mds/index.json", "not listed in the manifest's files")

    for name, s in shards.items():  # structure
        if ok(rel := f"megatron/{name}.bin") and rel in entries:
            if (size := fs.size(f"{root}/{rel}")) != s["samples"] * seq_len * dtype.itemsize:
                bad(rel, f"{size} bytes, expected {s['samples']} samples x {seq_len} x {dtype.itemsize}")
        if ok(rel := f"megatron/{name}.idx") and rel in entries:
            if what := idx_problem(fs.cat(f"{root}/{rel}"), s["samples"], seq_len, dtype):
                bad(rel, what)
        if ok(rel := f"parquet/{name}.parquet") and rel in entries:
            try:
                if (n := pq.ParquetFile(f"{root}/{rel}", filesystem=fs).metadata.num_rows) != s["samples"]:
                    bad(rel, f"{n} rows, the manifest says {s['samples']} samples")
            except (OSError, pa.ArrowException) as exc:
                bad(rel, f"not a Parquet file ({exc})")
    for rel in entries:
        if ok(rel):
            digest = io.sha256_file(f"{folder}/{rel}")
            if digest != entries[rel]["sha256"]:
                bad(rel, f"sha256 {digest[:12]}... does not match the manifest's {entries[rel]['sha256'][:12]}...")

    # content, against the bookkeeping: per shard position, the sample's tokens and its pieces that end a document
    try:
        used, ends = placed(fs, root)
    except (OSError, ValueError, pa.ArrowException) as exc:
        used, ends = {}, {}
        bad("_placement", f"cannot read the bookkeeping ({exc})")
    for name, s in shards.items():
        if len(n := used.get(name, ())) != s["samples"] or sum(n) != s["tokens"]:
            bad("_placement", f"shard {name}: {len(n)} samples of {sum(n)} tokens placed, the manifest says "
                              f"{s['samples']} of {s['tokens']}")
            continue
        if "megatron" in m["formats"] and ok(rel := f"megatron/{name}.bin"):
            documents = ends[name] if m["eos"] else np.zeros_like(ends[name])
            if (what := bin_problem(f"{folder}/{rel}", dtype, seq_len, pad, vocab, n, documents, s["eod"])):
                bad(rel, what)
        if "parquet" in m["formats"] and ok(rel := f"parquet/{name}.parquet"):
            if what := parquet_problem(fs, f"{root}/{rel}", seq_len, n):
                bad(rel, what)
    if "mds/index.json" in entries and ok("mds/index.json"):
        n = sum(sh["samples"] for sh in io.read_json(f"{folder}/mds/index.json")["shards"])
        if n != m["totals"]["samples"]:
            bad("mds/index.json", f"{n} samples, the manifest says {m['totals']['samples']}")
    return [f"{path}: {what}" for path, what in problems.items()]


def idx_problem(data: bytes, samples: int, seq_len: int, dtype: np.dtype) -> str | None:
    want = index_bytes(samples, seq_len, dtype)
    if data == want:
        return None
    if len(data) < 34 or data[:9] != HEADER:
        return "not a Megatron index (bad header)"
    _, code, n_seq, n_doc = struct.unpack("<QBQQ", data[9:34])
    if code != DTYPE_CODES[dtype]:
        return f"dtype code {code}, the manifest's {dtype.name} is {DTYPE_CODES[dtype]}"
    if (n_seq, n_doc) != (samples, samples + 1):
        return f"{n_seq} sequences and {n_doc} document entries, expected {samples} and {samples + 1}"
    if len(data) != len(want):
        return f"{len(data)} bytes, expected {len(want)} for {samples} sequences"
    at = np.flatnonzero(np.frombuffer(data, np.uint8) != np.frombuffer(want, np.uint8))[0]
    sections = [(17, "version"), (34, "header"), (34 + 4 * samples, f"lengths (each should be {seq_len})"),
                (34 + 12 * samples, "pointers"), (len(want), "document index")]
    return f"{next(name for end, name in sections if at < end)} differ from what the writer writes"


def parquet_problem(fs, path: str, seq_len: int, used: np.ndarray) -> str | None:
    t = pq.read_table(path, filesystem=fs, columns=["input_ids", "lengths"])
    ids, lengths = t.column("input_ids").combine_chunks(), t.column("lengths").combine_chunks()
    if (i := np.flatnonzero(pc.list_value_length(ids).to_numpy(zero_copy_only=False) != seq_len)).size:
        return f"row {i[0]}: {len(ids[int(i[0])])} input_ids, expected {seq_len}"
    sums = np.bincount(pc.list_parent_indices(lengths).to_numpy(), pc.list_flatten(lengths).to_numpy(),
                       minlength=len(lengths)).astype(np.int64)
    if (i := np.flatnonzero(sums != used)).size:
        return f"row {i[0]}: lengths sum to {sums[i[0]]} (padding {seq_len - sums[i[0]]}), its sample holds " \
               f"{used[i[0]]} tokens"
    return None


def placed(fs, root: str) -> tuple[dict, dict]:
    """Per output shard, in sample order: each sample's tokens and its pieces that end a document."""
    def table(sub, columns):
        if not (paths := fs.glob(f"{root}/{sub}/*.parquet")):
            raise FileNotFoundError(f"no {sub}/*.parquet")
        return pa.concat_tables([pq.read_table(p, filesystem=fs, columns=columns) for p in sorted(paths)])
    prov = table("_provenance", ["part", "sample", "doc_token_start", "tokens", "doc_tokens"])
    ending = prov.filter(pc.equal(pc.add(prov["doc_token_start"], prov["tokens"]), prov["doc_tokens"]))
    ending = ending.group_by(["part", "sample"]).aggregate([("tokens", "count")])
    ending = ending.rename_columns(["part", "sample", "ends"])
    t = table("_placement", ["shard", "index", "part", "sample"]).join(
        table("_samples", ["part", "sample", "tokens"]), ["part", "sample"]).join(ending, ["part", "sample"])
    t = t.sort_by([("shard", "ascending"), ("index", "ascending")])
    names, starts = np.unique(t["shard"].to_numpy(zero_copy_only=False), return_index=True)
    bounds = list(zip(starts, [*starts[1:], len(t)]))
    tokens, n_ends = t["tokens"].to_numpy(), t["ends"].fill_null(0).to_numpy()
    return ({n: tokens[a:b] for n, (a, b) in zip(names, bounds)}, {n: n_ends[a:b] for n, (a, b) in zip(names, bounds)})


def bin_problem(path, dtype, seq_len, pad, vocab, used, ends, eod) -> str | None:
    rows, pads = io.read_array(path, dtype).reshape(-1, seq_len), 0
    for a in range(0, len(rows), ROWS):
        block, n = rows[a:a + ROWS], used[a:a + ROWS]
        if (i := np.flatnonzero(((block >= vocab) | (block < 0)).any(axis=1))).size:
            return f"sample {a + i[0]}: token ids outside the vocabulary [0, {vocab})"
        padding = np.arange(seq_len) >= n[:, None]
        if (i := np.flatnonzero(((block != pad) & padding).any(axis=1))).size:
            return f"sample {a + i[0]}: ids other than pad_id {pad} after its {n[i[0]]} tokens"
        inside = ((block == pad) & ~padding).sum(axis=1)
        if (i := np.flatnonzero(inside != ends[a:a + ROWS])).size:
            return f"sample {a + i[0]}: {inside[i[0]]} pad_id among its tokens, {ends[a + i[0]]} documents end there"
        pads += int((block == pad).sum())
    return None if pads == eod else f"{pads} pad_id tokens, the manifest's eod says {eod}"


def summary(folder: str) -> str:
    """One line on a verified output: shards, samples and tokens per format."""
    m = io.read_json(f"{folder.rstrip('/')}/manifest.json")
    t, files = m["totals"], m["files"]
    shards = {f: sum(e["path"].endswith((".bin", ".parquet", ".mds")) for e in files[f]) for f in m["formats"]}
    per = ", ".join(f"{f} ({n} shard{'s' * (n != 1)})" for f, n in shards.items())
    return (f"{folder}: OK, {t['samples']} samples of {m['seq_len']} ({t['tokens']} tokens + {t['padding']} padding) "
            f"in each of {per}; "
            f"{sum(map(len, files.values()))} files match their sha256")
