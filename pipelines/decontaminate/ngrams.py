"""Word n-grams of normalised text as 64-bit hashes, computed over a whole batch of texts at once
(numpy; a Python object per word only while it is hashed, none per n-gram), and the benchmark index
they are looked up in.

Normalisation (the same on both sides): lowercase, drop every character that is neither a word
character nor whitespace (punctuation, symbols), split on whitespace. A word's hash is xxh3 of its
UTF-8 bytes, an n-gram's a polynomial over its words' hashes passed through the splitmix64
finaliser; with a million benchmark n-grams the chance that any of a billion document n-grams
matches one by accident is about 5e-5.
"""

import re
from dataclasses import dataclass

import numpy as np
import xxhash

DROPPED = re.compile(r"[^\w\s]+")
TOKEN = re.compile(r"\S+")
WORD_BASE = np.uint64(0x9E3779B97F4A7C15)


def normalise(text: str) -> str:
    """The text's words joined by single spaces."""
    return " ".join(DROPPED.sub("", text.lower()).split())


def words(text: str) -> list[str]:
    return normalise(text).split()


def word_spans(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """The words of `words(text)` with the character span of the token each comes from."""
    found, spans = [], []
    for m in TOKEN.finditer(text):
        word = DROPPED.sub("", m.group().lower())
        if word:  # a token of punctuation only is no word
            found.append(word)
            spans.append(m.span())
    return found, spans


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every input bit reaches every output bit (uint64 arithmetic wraps)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def word_hashes(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(xxh3 of every word of every normalised text, in order; the index of the text each word is in)."""
    counts = np.fromiter((t.count(" ") + 1 if t else 0 for t in texts), dtype=np.int64, count=len(texts))
    text_of = np.repeat(np.arange(len(texts)), counts)
    data = " ".join(t for t in texts if t).encode("utf-8", "surrogatepass").split(b" ") if len(text_of) else []
    return np.fromiter(map(xxhash.xxh3_64_intdigest, data), dtype=np.uint64, count=len(text_of)), text_of


def ngram_hashes(hashes: np.ndarray, text_of: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(hash of every run of n words inside one text, the index of its first word)."""
    count = len(hashes) - n + 1
    if count <= 0:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
    acc = np.zeros(count, dtype=np.uint64)
    for j in range(n):
        acc = acc * WORD_BASE + hashes[j : j + count]
    start = np.flatnonzero(text_of[:count] == text_of[n - 1 :])
    return _mix(acc[start]), start


@dataclass
class Index:
    """Sorted n-gram hashes of every benchmark item (one row per distinct hash and item), and per length
    below `n` the hashes of the items that short, matched whole."""

    n: int
    keys: np.ndarray  # uint64, sorted
    benchmark: np.ndarray  # int32, the benchmark of each row
    item: np.ndarray  # int64, the item's index within its benchmark
    short: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]  # words -> (keys, benchmark, item)

    def __post_init__(self):
        self._bits = {self.n: bitmap(self.keys)} | {w: bitmap(keys) for w, (keys, _, _) in self.short.items()}

    @classmethod
    def build(cls, benchmarks: list[list[str]], n: int) -> "Index":
        """`benchmarks`: the item texts of each benchmark."""
        rows, short = [], {}
        for b, items in enumerate(benchmarks):
            hashes, item_of = word_hashes([normalise(t) for t in items])
            keys, start = ngram_hashes(hashes, item_of, n)
            rows.append((keys, np.full(len(keys), b, dtype=np.int32), item_of[start]))
            lengths = np.bincount(item_of, minlength=len(items))
            for w in sorted(set(lengths[(lengths > 0) & (lengths < n)].tolist())):
                keys, start = ngram_hashes(hashes, item_of, w)
                whole = lengths[item_of[start]] == w  # the run is the whole item
                short.setdefault(w, []).append((keys[whole], np.full(int(whole.sum()), b, dtype=np.int32),
                                                item_of[start][whole]))
        return cls(n, *_sorted_unique(rows), {w: _sorted_unique(parts) for w, parts in short.items()})

    @property
    def size(self) -> int:
        return len(self.keys) + sum(len(k) for k, _, _ in self.short.values())

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"n": np.array([self.n]), "keys": self.keys, "benchmark": self.benchmark, "item": self.item}
        for w, (keys, bench, item) in self.short.items():
            out |= {f"short{w}_keys": keys, f"short{w}_benchmark": bench, f"short{w}_item": item}
        return out

    @classmethod
    def from_arrays(cls, arrays) -> "Index":
        short = {int(k[5:-5]): (arrays[k], arrays[f"{k[:-5]}_benchmark"], arrays[f"{k[:-5]}_item"])
                 for k in arrays if k.startswith("short") and k.endswith("_keys")}
        return cls(int(arrays["n"][0]), arrays["keys"], arrays["benchmark"], arrays["item"], short)

    def matches(self, texts: list[str]) -> "Matches":
        """Every (text, first word, length, benchmark, item) where a benchmark n-gram (or a whole short item)
        occurs in the normalised texts."""
        hashes, text_of = word_hashes(texts)
        found = [_lookup(*ngram_hashes(hashes, text_of, self.n), self.n, text_of, self.keys, self.benchmark,
                         self.item, self._bits[self.n])]
        for w, table in sorted(self.short.items()):
            found.append(_lookup(*ngram_hashes(hashes, text_of, w), w, text_of, *table, self._bits[w]))
        text, start, *rest = (np.concatenate(column) for column in zip(*found))
        first_word = np.searchsorted(text_of, text)  # of each match's text: starts count from there
        return Matches(text, start - first_word, *rest)


@dataclass
class Matches:
    text: np.ndarray
    start: np.ndarray  # the matching run's first word, within its text
    length: np.ndarray  # its words: n, or a short item's length
    key: np.ndarray
    benchmark: np.ndarray
    item: np.ndarray


def bitmap(keys: np.ndarray) -> np.ndarray:
    """A flag per value of the keys' low bits (a power of two, 8 or more slots per key): a query whose
    slot is empty is no key, without a search."""
    size = 1 << max(16, int(8 * max(len(keys), 1) - 1).bit_length())
    bits = np.zeros(size, dtype=bool)
    bits[keys & np.uint64(size - 1)] = True
    return bits


def _sorted_unique(rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, ...]:
    keys, bench, item = (np.concatenate(c) for c in zip(*rows))
    order = np.lexsort((item, bench, keys))
    keys, bench, item = keys[order], bench[order], item[order]
    first = np.ones(len(keys), dtype=bool)
    first[1:] = (keys[1:] != keys[:-1]) | (bench[1:] != bench[:-1]) | (item[1:] != item[:-1])
    return keys[first], bench[first].astype(np.int32), item[first].astype(np.int64)


def _lookup(query: np.ndarray, start: np.ndarray, length: int, text_of: np.ndarray, keys: np.ndarray,
            bench: np.ndarray, item: np.ndarray, bits: np.ndarray) -> tuple[np.ndarray, ...]:
    maybe = np.flatnonzero(bits[query & np.uint64(len(bits) - 1)])  # most queries stop here
    low = np.searchsorted(keys, query[maybe], "left")
    found = low < len(keys)
    found[found] = keys[low[found]] == query[maybe][found]
    hit, low = maybe[found], low[found]
    per = np.searchsorted(keys, query[hit], "right") - low
    row = np.repeat(low - np.cumsum(per) + per, per) + np.arange(int(per.sum()))  # each hit's index rows
    at = np.repeat(hit, per)
    return (text_of[start[at]], start[at], np.full(len(at), length, dtype=np.int64), query[at], bench[row],
            item[row])
