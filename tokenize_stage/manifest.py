"""`OUT/tokenize/manifest.json`: what a reader needs to use the samples without guessing (tokenizer
identity, dtype, seq_len, padding token, packing, shuffle seed), every shard with its counts, and
every file written per format with its sha256. `decompress` restores Megatron .bin files from their
.bin.zst copies against it."""

import math

import fsspec
import numpy as np
import zstandard

from pipelines import io

FORMAT = "gristmill-tokens-v2"
SAMPLE_LAYOUT = ("every sample is exactly seq_len tokens, padded with pad_id (the end-of-text token); documents "
                 "inside a sample end with it; megatron: one sequence and one document per sample")


def write_manifest(folder: str, tokenizer, dtype, pad: int, cfg, parts: list[str], mds_index: dict | None) -> dict:
    """From the per-part lists (`_meta/<part>.json`) the writers left."""
    metas = [io.read_json(io.join(folder, "_meta", f"{part}.json")) for part in parts]
    shards = [s for m in metas for s in m["shards"]]
    files = {f: [e for m in metas for e in m["files"].get(f, [])] for f in cfg.formats}
    if mds_index:
        files["mds"].append(mds_index)
    total = {k: sum(s[k] for s in shards) for k in ("tokens", "samples", "padding", "pieces")}
    slots = total["samples"] * cfg.seq_len
    manifest = {
        "format": FORMAT, "tokenizer": tokenizer.identity, "dtype": np.dtype(dtype).name, "seq_len": cfg.seq_len,
        "pad_id": pad, "pack": cfg.pack, "window": cfg.window, "eos": cfg.eos, "bos": cfg.bos, "seed": cfg.seed,
        "formats": list(cfg.formats), "sample_layout": SAMPLE_LAYOUT,
        "totals": {**total, "utilization": round(total["tokens"] / slots, 6) if slots else None,
                   "min_samples": math.ceil(total["tokens"] / cfg.seq_len)},
        "shards": shards, "files": files,
    }
    io.write_json_atomic(io.join(folder, "manifest.json"), manifest)
    return manifest


def read_manifest(folder: str) -> dict:
    manifest = io.read_json(io.join(folder, "manifest.json"))
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{folder}/manifest.json: format {manifest.get('format')!r}, expected {FORMAT!r}")
    return manifest


def decompress(folder: str) -> list[str]:
    """Restores every Megatron .bin from its .bin.zst copy and checks it against the manifest's sha256."""
    manifest = read_manifest(folder)
    sha = {e["path"]: e["sha256"] for e in manifest["files"].get("megatron", [])}
    restored = []
    for rel in [p for p in sha if p.endswith(".bin")]:
        out = io.AtomicFile(io.join(folder, rel))
        with fsspec.open(io.join(folder, f"{rel}.zst"), "rb") as src:
            for chunk in zstandard.ZstdDecompressor().read_to_iter(src, read_size=1 << 20):
                out.write(chunk)
        if out.sha256() != sha[rel]:
            out.discard()
            raise ValueError(f"{rel}.zst does not match the manifest's sha256")
        out.commit()
        restored.append(rel)
    return restored
