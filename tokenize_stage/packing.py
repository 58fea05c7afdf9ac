"""Sequence packing: documents (token arrays) -> training samples of at most `seq_len` tokens.

- best_fit: best-fit-decreasing bin packing over a window of documents ("Fewer Truncations Improve
  Language Modeling", Ding et al. 2024). A document that fits in seq_len is never split. Documents
  longer than seq_len must be cut anyway: their tokens first top up the space best-fit leaves in
  each sample, then fill whole samples; what is left of them waits for the next window. Space
  that remains is padding (only when a window has no long document to fill it).
- concat: concatenate everything and cut every seq_len tokens (the classic baseline; splits documents).
- none: one document per sample (long ones cut into seq_len chunks).

A sample is a list of Pieces; each piece is a run of one document's tokens, so boundaries survive.
"""

from bisect import bisect_left, insort
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Piece:
    doc: int  # position of the document in the shard's stream
    start: int  # token offset inside the document
    tokens: np.ndarray

    def __len__(self) -> int:
        return len(self.tokens)


def _chunks(doc: int, tokens: np.ndarray, seq_len: int) -> list[Piece]:
    return [Piece(doc, s, tokens[s : s + seq_len]) for s in range(0, len(tokens), seq_len)]


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


def _best_fit_window(pieces: list[Piece], seq_len: int) -> list[list[Piece]]:
    """Best-fit decreasing: longest first (ties in arrival order), each into the fullest bin it fits."""
    bins: list[list[Piece]] = []
    room: list[tuple[int, int]] = []  # sorted (free space, bin index)
    for piece in sorted(pieces, key=len, reverse=True):  # sort is stable: ties keep arrival order
        i = bisect_left(room, (len(piece), -1))
        if i < len(room):
            free, b = room.pop(i)
            bins[b].append(piece)
            if free - len(piece) > 0:
                insort(room, (free - len(piece), b))
        else:
            bins.append([piece])
            if seq_len - len(piece) > 0:
                insort(room, (seq_len - len(piece), len(bins) - 1))
    return bins


class _Filler:
    """Tokens of documents longer than seq_len, in order. They are split anyway, so they top up the
    space that best-fit leaves in each sample and fill whole samples with the rest."""

    def __init__(self):
        self.pieces: deque[Piece] = deque()
        self.size = 0

    def add(self, piece: Piece) -> None:
        self.pieces.append(piece)
        self.size += len(piece)

    def take(self, n: int) -> list[Piece]:
        out = []
        while n > 0 and self.pieces:
            head = self.pieces[0]
            if len(head) <= n:
                out.append(self.pieces.popleft())
            else:
                out.append(Piece(head.doc, head.start, head.tokens[:n]))
                self.pieces[0] = Piece(head.doc, head.start + n, head.tokens[n:])
            n -= len(out[-1])
            self.size -= len(out[-1])
        return out


def _flush(fitting: list[Piece], filler: _Filler, seq_len: int, final: bool) -> Iterator[list[Piece]]:
    for sample in _best_fit_window(fitting, seq_len):
        yield sample + filler.take(seq_len - sum(len(p) for p in sample))
    while filler.size >= seq_len:
        yield filler.take(seq_len)
    if final and filler.size:
        yield filler.take(seq_len)


def pack_best_fit(docs: Iterable[tuple[int, np.ndarray]], seq_len: int, window: int) -> Iterator[list[Piece]]:
    fitting: list[Piece] = []
    filler = _Filler()
    count = 0
    for doc, tokens in docs:
        (fitting.append if len(tokens) <= seq_len else filler.add)(Piece(doc, 0, tokens))
        count += 1
        if count == window:
            yield from _flush(fitting, filler, seq_len, final=False)
            fitting, count = [], 0
    yield from _flush(fitting, filler, seq_len, final=True)  # a long document's tail may wait for the next window


def pack(docs: Iterable[tuple[int, np.ndarray]], mode: str, seq_len: int, window: int) -> Iterator[list[Piece]]:
    if mode == "best_fit":
        return pack_best_fit(docs, seq_len, window)
    if mode == "concat":
        return pack_concat(docs, seq_len)
    if mode == "none":
        return pack_none(docs, seq_len)
    raise ValueError(f"unknown packing mode {mode!r}")
