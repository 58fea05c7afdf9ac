"""`<folder>/manifest.json`: what a reader needs to use the token shards without guessing (tokenizer
identity, dtype, seq_len, packing) and every shard with its sha256; `decompress` restores .bin files
from their .bin.zst copies against it."""

import hashlib
import uuid

import fsspec
import zstandard

from pipelines import io

FORMAT = "megatron-mmididx-v1"


def write_manifest(folder: str, tokenizer, dtype, cfg, parts: list[str]) -> dict:
    """From the per-part shard lists (`_meta/<part>.json`) written by the tokenize tasks."""
    shards = [s for part in parts for s in io.read_json(io.join(folder, "_meta", f"{part}.json"))["shards"]]
    total = {k: sum(s[k] for s in shards) for k in ("tokens", "samples", "documents", "padding")}
    slots = total["samples"] * cfg.seq_len
    manifest = {
        "format": FORMAT, "tokenizer": tokenizer.identity, "dtype": dtype.name, "seq_len": cfg.seq_len,
        "pack": cfg.pack, "window": cfg.window, "eos": cfg.eos, "bos": cfg.bos,
        "sample_layout": "one Megatron document per packed sample; its sequences are the packed documents",
        "totals": {**total, "utilization": round(total["tokens"] / slots, 6) if slots else None},
        "shards": [{**s, "bin": f"{s['shard']}.bin", "idx": f"{s['shard']}.idx"} for s in shards],
    }
    io.write_json_atomic(io.join(folder, "manifest.json"), manifest)
    return manifest


def read_manifest(folder: str) -> dict:
    manifest = io.read_json(io.join(folder, "manifest.json"))
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{folder}/manifest.json: format {manifest.get('format')!r}, expected {FORMAT!r}")
    return manifest


def decompress(folder: str) -> list[str]:
    """Restores every .bin from its .bin.zst copy and checks it against the manifest's sha256."""
    manifest = read_manifest(folder)
    fs, root = fsspec.core.url_to_fs(folder)
    restored = []
    for s in manifest["shards"]:
        tmp = f"{root}/.tmp-{uuid.uuid4().hex}-{s['bin']}"
        digest = hashlib.sha256()
        with fs.open(f"{root}/{s['bin']}.zst", "rb") as src, fs.open(tmp, "wb") as dst:
            for chunk in zstandard.ZstdDecompressor().read_to_iter(src, read_size=1 << 20):
                digest.update(chunk)
                dst.write(chunk)
        if digest.hexdigest() != s["sha256"]:
            fs.rm(tmp)
            raise ValueError(f"{s['bin']}.zst does not match the manifest's sha256")
        fs.mv(tmp, f"{root}/{s['bin']}")
        restored.append(s["bin"])
    return restored
