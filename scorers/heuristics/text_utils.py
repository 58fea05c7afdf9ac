"""Text splitting shared by the rule modules: lines, paragraphs and the two word splittings.

`spacy` words are the tokens of spaCy's blank tokenizer for the document's language (what datatrove,
which made FineWeb, splits words with): punctuation is split off words and kept as tokens of its own.
spaCy splits text at whitespace first and tokenizes each whitespace-free chunk on its own, so the
tokens of each distinct chunk are cached here: a document costs a `str.split` and dictionary lookups,
and spaCy only sees chunks it has not seen yet. `whitespace` words are whitespace tokens with the
punctuation around them stripped (pure-punctuation tokens are kept, as symbols).

Languages: spaCy's blank tokenizer for the language code (lid.176 codes are ISO 639-1, as spaCy's);
a language spaCy has no blank tokenizer for, or one that needs a package not installed (ja: sudachipy,
th: pythainlp, vi: pyvi, ko: mecab...), uses spaCy's multi-language `xx` tokenizer, which is
datatrove's own fallback. Datatrove uses other libraries for some languages (Chinese with jieba,
Japanese with sudachi, Indic languages with indic-nlp...): there, words can differ.
"""

import functools
import itertools
import re
import string
import unicodedata

# datatrove.utils.text.PUNCTUATION (Apache-2.0): a token made only of these (or of TERMINAL_PUNCTUATION)
# is a symbol, not a word
PUNCTUATION = (
    '!/\u2014\u201d:\uff05\uff11\u3008&(\u3001\u2501\\\u3010#%\u300c\u300d\uff0c\u3011\uff1b+^]~\u201c\u300a\u201e\';'
    '\u2019{|\u2236\xb4[=-`*\uff0e\uff08\u2013\uff1f\uff01\uff1a$\uff5e\xab\u3009,><\u300b)?\uff09\u3002\u2026@_."}'
    '\u25ba\xbb' + "".join(map(chr, [*range(0, 9), *range(11, 32), *range(127, 160)]))
)
# Unicode's sentence terminals, as datatrove.utils.text.TERMINAL_PUNCTUATION lists them (FineWeb's
# line-end test): Latin, CJK, Arabic, Indic (danda), Ethiopic, Myanmar... marks
TERMINAL_PUNCTUATION = tuple(
    '!.?\u0589\u061d\u061e\u061f\u06d4\u0700\u0701\u0702\u07f9\u0837\u0839\u083d\u083e\u0964\u0965\u104a\u104b'
    '\u1362\u1367\u1368\u166e\u1735\u1736\u17d4\u17d5\u17d6\u17d9\u17da\u1803\u1809\u1944\u1945\u1aa8\u1aa9\u1aaa'
    '\u1aab\u1b5a\u1b5b\u1b5e\u1b5f\u1b7d\u1b7e\u1c3b\u1c3c\u1c7e\u1c7f\u203c\u203d\u2047\u2048\u2049\u2e2e\u2e3c'
    '\u2e53\u2e54\u3002\ua4ff\ua60e\ua60f\ua6f3\ua6f7\ua876\ua877\ua8ce\ua8cf\ua92f\ua9c8\ua9c9\uaa5d\uaa5e\uaa5f'
    '\uaaf0\uaaf1\uabeb\ufe52\ufe56\ufe57\uff01\uff0e\uff1f\uff61\U00010a56\U00010a57\U00010f55\U00010f56'
    '\U00010f57\U00010f58\U00010f59\U00010f86\U00010f87\U00010f88\U00010f89\U00011047\U00011048\U000110be'
    '\U000110bf\U000110c0\U000110c1\U00011141\U00011142\U00011143\U000111c5\U000111c6\U000111cd\U000111de'
    '\U000111df\U00011238\U00011239\U0001123b\U0001123c\U000112a9\U0001144b\U0001144c\U000115c2\U000115c3'
    '\U000115c9\U000115ca\U000115cb\U000115cc\U000115cd\U000115ce\U000115cf\U000115d0\U000115d1\U000115d2'
    '\U000115d3\U000115d4\U000115d5\U000115d6\U000115d7\U00011641\U00011642\U0001173c\U0001173d\U0001173e'
    '\U00011944\U00011946\U00011a42\U00011a43\U00011a9b\U00011a9c\U00011c41\U00011c42\U00011ef7\U00011ef8'
    '\U00011f43\U00011f44\U00016a6e\U00016a6f\U00016af5\U00016b37\U00016b38\U00016b44\U00016e98\U0001bc9f'
    '\U0001da88'
)
_SYMBOL = re.compile("[" + re.escape(PUNCTUATION + "".join(TERMINAL_PUNCTUATION)) + "]*")
_STRIP = string.punctuation + "“”‘’«»…–—·•"
_CACHE_LIMIT = 100_000  # distinct chunks cached per language, about 35 MB (then the cache starts again)


def is_symbol(token: str) -> bool:
    """Only punctuation (datatrove's reading of Gopher's "words": the others)."""
    return _SYMBOL.fullmatch(token) is not None


def has_alpha(token: str) -> bool:
    return any(c.isalpha() for c in token)


class _Splitter:
    """spaCy's blank tokenizer for one language (loaded on first use: importing spaCy takes a second)."""

    def __init__(self, language: str):
        import spacy

        try:
            self.nlp = spacy.blank(language)
        except (ImportError, KeyError, ValueError):  # no such language class, or its package is missing
            self.nlp = spacy.blank("xx")
        self.chunks: dict[str, tuple[str, ...]] = {}
        self.punct_chars = frozenset(self.nlp.create_pipe("sentencizer").punct_chars)
        self.special = frozenset(self.nlp.tokenizer.rules)

    def tokens(self, chunks: list[str]) -> list[tuple[str, ...]]:
        """The tokens of each whitespace-free chunk."""
        missing = [c for c in dict.fromkeys(chunks) if c not in self.chunks]
        if len(self.chunks) + len(missing) > _CACHE_LIMIT:
            self.chunks.clear()
            missing = list(dict.fromkeys(chunks))
        # spaCy keeps a chunk of ASCII letters whole unless it is a special case ("cannot", "dont")
        plain = [c for c in missing if c.isascii() and c.isalpha() and c not in self.special]
        self.chunks.update((c, (c,)) for c in plain)
        if len(plain) < len(missing):
            self._tokenize([c for c in missing if c not in self.chunks])
        cache = self.chunks
        return [cache[c] for c in chunks]

    def _tokenize(self, chunks: list[str]) -> None:
        """spaCy's tokens of each chunk, from one call on the chunks joined by spaces."""
        found: list[list[str]] = [[] for _ in chunks]
        ends = list(itertools.accumulate(len(c) + 1 for c in chunks))  # where the next chunk starts
        k = 0
        with self.nlp.memory_zone():  # spaCy's string store must not grow with the corpus
            for token in self.nlp.tokenizer(" ".join(chunks)):
                while token.idx >= ends[k]:
                    k += 1
                found[k].append(token.text)
        for chunk, tokens in zip(chunks, found):
            self.chunks[chunk] = tuple(t for t in (t.strip() for t in tokens) if t)


@functools.cache
def splitter(language: str | None) -> _Splitter:
    return _Splitter(language or "en")


@functools.lru_cache(maxsize=4)  # several rules split the same text in a row
def words(text: str, how: str = "spacy", language: str | None = None) -> tuple[str, ...]:
    """The words of `text`: `spacy` tokens (words and punctuation) or `whitespace` ones (see above)."""
    if how == "whitespace":
        return tuple(t.strip(_STRIP) or t for t in text.split())
    return tuple(t for toks in splitter(language).tokens(text.split()) for t in toks)


_CHUNK = re.compile(r"(\s*)(\S+)")


def sentence_count(line: str, language: str | None = None) -> int:
    """Sentences in `line` as spaCy's rule-based sentencizer splits them (what datatrove's C4 filter
    counts with): a sentence ends after a token that is one of its punctuation marks (".", "!", "?", "。",
    "।"...) and the punctuation after it; at least one per line."""
    split = splitter(language)
    if not split.punct_chars.intersection(line):
        return 1
    count, seen_period = 1, False
    pieces = _CHUNK.findall(line.strip())
    for (gap, _), chunk_tokens in zip(pieces, split.tokens([chunk for _, chunk in pieces])):
        # spaCy makes a token of any whitespace between chunks but a single space: a non-punctuation token
        for token in ((" ",) if gap and gap != " " else ()) + chunk_tokens:
            in_punct_chars = token in split.punct_chars
            if seen_period and not in_punct_chars and not _is_punct(token):
                count += 1
                seen_period = False
            elif in_punct_chars:
                seen_period = True
    return count


def _is_punct(token: str) -> bool:  # spaCy's IS_PUNCT
    return all(unicodedata.category(c).startswith("P") for c in token)


def paragraphs(text: str) -> list[str]:
    """Paragraphs as Gopher's repetition rule splits them (datatrove): at runs of two or more newlines."""
    return re.split(r"\n{2,}", text.strip())


def duplicated(items: list[str]) -> tuple[int, int]:
    """(count, characters) of items that repeat an earlier item."""
    seen: set[str] = set()
    count = chars = 0
    for item in items:
        if item in seen:
            count += 1
            chars += len(item)
        else:
            seen.add(item)
    return count, chars
