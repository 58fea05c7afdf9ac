"""MinHash signatures and LSH band keys, vectorised with numpy over all shingles of a document.

Text is normalised (NFC, lowercase, digits -> 0, punctuation dropped, whitespace collapsed), split
into words, and every word n-gram is hashed to 64 bits (xxh64 of each distinct word, then a
polynomial over the n words). Permutation i is a splitmix64 mix of (shingle XOR seed_i); the
signature is the minimum over shingles. A text with fewer than n words is one shingle (all its
words), so short documents still match their exact copies (docs/stages.md says so).
"""

import functools
import re
import unicodedata

import numpy as np
import xxhash

_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)
_DIGITS = re.compile(r"\d")
MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def normalize(text: str, lowercase: bool = True, digits: bool = True, punctuation: bool = True) -> str:
    if text.isascii():  # one bytes.translate instead of four Unicode passes; most crawl text is ASCII
        text = text.encode("ascii").translate(_ascii_table(lowercase, digits, punctuation)).decode("ascii")
        return " ".join(text.split())
    text = unicodedata.normalize("NFC", text)
    if lowercase:
        text = text.lower()
    if digits:
        text = _DIGITS.sub("0", text)
    if punctuation:
        text = _PUNCT.sub(" ", text)
    return " ".join(text.split())


@functools.cache
def _ascii_table(lowercase: bool, digits: bool, punctuation: bool) -> bytes:
    """What `normalize` does to each ASCII character (each maps to one character), as a translate table."""
    table = bytearray(range(256))
    for code in range(128):
        char = chr(code).lower() if lowercase else chr(code)
        char = _DIGITS.sub("0", char) if digits else char
        table[code] = ord(_PUNCT.sub(" ", char) if punctuation else char)
    return bytes(table)


def exact_key(normalized: str) -> int:
    return xxhash.xxh64_intdigest(normalized.encode("utf-8"))


def shingle_hashes(normalized: str, n: int) -> np.ndarray:
    """Distinct 64-bit hashes of the word n-grams, sorted (one shingle for texts shorter than n words)."""
    words = normalized.split()
    if not words:
        return np.zeros(0, dtype=np.uint64)
    vocab = {w: xxhash.xxh64_intdigest(w.encode("utf-8")) for w in set(words)}  # each distinct word once
    ids = np.fromiter(map(vocab.__getitem__, words), dtype=np.uint64, count=len(words))
    n = min(n, len(ids))
    count = len(ids) - n + 1
    h = np.zeros(count, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):
            h = h * np.uint64(0x100000001B3) + ids[k : k + count]
    h.sort()  # distinct by sorting: faster than np.unique's hash table on a few thousand values
    return h[np.concatenate(([True], h[1:] != h[:-1]))]


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a fast, well-spread 64-bit permutation."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def seeds(num_perm: int, seed: int) -> np.ndarray:
    return _mix(np.arange(num_perm, dtype=np.uint64) + np.uint64(seed) * np.uint64(1_000_003))


def signature(shingles: np.ndarray, perm_seeds: np.ndarray, block: int = 4096) -> np.ndarray:
    """Minimum over shingles of each permutation; all-ones for a document without shingles."""
    sig = np.full(len(perm_seeds), MASK, dtype=np.uint64)
    for start in range(0, len(shingles), block):  # blocks bound memory for huge documents
        chunk = shingles[start : start + block]
        sig = np.minimum(sig, _mix(chunk[None, :] ^ perm_seeds[:, None]).min(axis=1))
    return sig


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(docs, num_perm) signatures -> (docs, bands) 64-bit keys, one per band of `rows` values."""
    grouped = signatures.reshape(len(signatures), bands, rows)
    keys = np.zeros(grouped.shape[:2], dtype=np.uint64)
    with np.errstate(over="ignore"):
        for r in range(rows):
            keys = _mix(keys ^ grouped[:, :, r])
    return keys


def s_curve(similarity: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """Probability that two documents of Jaccard `similarity` share at least one band."""
    return 1 - (1 - similarity**rows) ** bands


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard of two sorted arrays of distinct hashes (as `shingle_hashes` returns them)."""
    if not len(a) or not len(b):
        return float(len(a) == len(b))
    if len(a) > len(b):
        a, b = b, a
    at = np.minimum(np.searchsorted(b, a), len(b) - 1)  # each of the smaller set's hashes looked up in the larger
    inter = int(np.count_nonzero(b[at] == a))
    return inter / (len(a) + len(b) - inter)
