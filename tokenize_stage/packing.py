"""Sequence packing: documents (token arrays) -> training samples of exactly `seq_len` tokens.

- best_fit: chunk, then best-fit ("Fewer Truncations Improve Language Modeling", Ding et al. 2024).
  A document longer than seq_len is cut into seq_len chunks plus one remainder, each chunk a sample
  of its own: no document is cut into more than ceil(len / seq_len) pieces. Documents that fit and
  remainders are packed by best-fit decreasing over a window of documents; only samples filled to
  the last token leave the window. The pieces of the others wait for the next window, and what is
  left at the end of a part (`BestFit.leftovers`) is packed with every other part's by one
  release-level step (`pack_leftovers`), so utilization does not depend on window or shard size.
- concat: concatenate everything and cut every seq_len tokens (the classic baseline; splits documents).
- none: one document per sample (long ones cut into seq_len chunks).

A sample is a list of Pieces; each piece is a run of one document's tokens, so boundaries survive.
Samples short of seq_len are padded by the writer.
"""

from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Piece:
    doc: int  # position of the document in the part's stream
    start: int  # token offset inside the document
    tokens: np.ndarray

    def __len__(self) -> int:
        return len(self.tokens)


def _chunks(doc: int, tokens: np.ndarray, seq_len: int) -> list[Piece]:
    return [Piece(doc, s, tokens[s : s + seq_len]) for s in range(0, len(tokens), seq_len)]


def best_fit_decreasing(pieces: list[Piece], seq_len: int) -> list[list[Piece]]:
    """Longest first (ties in arrival order), each into the fullest bin it fits; bins in opening order."""
    bins: list[list[Piece]] = []
    room: list[tuple[int, int]] = []  # sorted (free space, bin index)
    for piece in sorted(pieces, key=len, reverse=True):  # sort is stable: ties keep arrival order
        i = bisect_left(room, (len(piece), -1))
        if i < len(room):
            free, b = room.pop(i)
            bins[b].append(piece)
            if free > len(piece):
                insort(room, (free - len(piece), b))
        else:
            bins.append([piece])
            if seq_len > len(piece):
                insort(room, (seq_len - len(piece), len(bins) - 1))
    return bins


def used(sample: list[Piece]) -> int:
    return sum(len(p) for p in sample)


class BestFit:
    """Chunk-then-best-fit over one part's documents, a window at a time. `add` yields the samples a
    document completes; `leftovers` yields the last full ones and returns the pieces still open."""

    def __init__(self, seq_len: int, window: int):
        self.seq_len, self.window = seq_len, window
        self.open: list[Piece] = []  # pieces of samples not yet full, carried from window to window
        self.fresh: list[Piece] = []  # this window's fitting documents and remainders
        self.count = 0

    def add(self, doc: int, tokens: np.ndarray) -> Iterator[list[Piece]]:
        pieces = _chunks(doc, tokens, self.seq_len)
        if len(pieces[-1]) < self.seq_len:
            self.fresh.append(pieces.pop())
        for chunk in pieces:
            yield [chunk]
        self.count += 1
        if self.count == self.window:
            yield from self._pack()

    def _pack(self) -> Iterator[list[Piece]]:
        bins = best_fit_decreasing(self.open + self.fresh, self.seq_len)
        self.fresh, self.count = [], 0
        full = [b for b in bins if used(b) == self.seq_len]
        rest = [b for b in bins if used(b) < self.seq_len]
        if len(rest) > self.window:  # pathological sizes: bound what is carried, pad the emptiest
            rest.sort(key=used, reverse=True)
            full += rest[self.window :]
            rest = rest[: self.window]
        self.open = [p for b in rest for p in b]
        yield from full

    def leftovers(self) -> Iterator[list[Piece]]:
        """Yields the full samples of the last window; returns (as StopIteration.value) the open pieces."""
        yield from self._pack()
        return self.open


def pack_leftovers(pieces: list[Piece], seq_len: int) -> list[list[Piece]]:
    """The release-level step: every part's open pieces, best-fit decreasing; all bins become samples."""
    return best_fit_decreasing(pieces, seq_len)


def pack_none(docs: Iterable[tuple[int, np.ndarray]], seq_len: int) -> Iterator[list[Piece]]:
    for doc, tokens in docs:
        for piece in _chunks(doc, tokens, seq_len):
            yield [piece]


def pack_concat(docs: Iterable[tuple[int, np.ndarray]], seq_len: int) -> Iterator[list[Piece]]:
    sample: list[Piece] = []
    room = seq_len
    for doc, tokens in docs:
        start = 0
        while start < len(tokens):
            take = min(room, len(tokens) - start)
            sample.append(Piece(doc, start, tokens[start : start + take]))
            start += take
            room -= take
            if room == 0:
                yield sample
                sample, room = [], seq_len
    if sample:
        yield sample


def pack(docs: Iterable[tuple[int, np.ndarray]], mode: str, seq_len: int, window: int):
    """Samples of one part; returns (as StopIteration.value) the pieces left for the release-level step."""
    if mode == "best_fit":
        packer = BestFit(seq_len, window)
        for doc, tokens in docs:
            yield from packer.add(doc, tokens)
        return (yield from packer.leftovers())
    if mode == "concat":
        yield from pack_concat(docs, seq_len)
    elif mode == "none":
        yield from pack_none(docs, seq_len)
    else:
        raise ValueError(f"unknown packing mode {mode!r}")
    return []
