"""Decode an HTML payload to text when the declared charset may be wrong or absent.

Order: BOM, then valid UTF-8 (multi-byte UTF-8 that decodes cleanly is almost never another
charset, so it beats a header that says ISO-8859-1), then the HTTP header, then <meta>, then
uchardet's guess. Labels are mapped as browsers do (WHATWG), e.g. ISO-8859-1 -> cp1252.
"""

import codecs
import re

from resiliparse.parse.encoding import detect_encoding, map_encoding_to_html5

_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
_META = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_:.-]+)""", re.IGNORECASE)
_HEADER = re.compile(r"charset\s*=\s*[\"']?([A-Za-z0-9_:.-]+)", re.IGNORECASE)


def _codec(label: str | None) -> str | None:
    if not label:
        return None
    mapped = map_encoding_to_html5(label)
    if not mapped or (mapped == "utf-8" and label.lower().replace("_", "-") not in ("utf-8", "utf8")):
        mapped = label  # labels WHATWG does not know (e.g. cp949) map to utf-8 there; trust Python's codec
    try:
        return codecs.lookup(mapped).name
    except LookupError:
        return None


def _strict(payload: bytes, encoding: str | None) -> str | None:
    if encoding is None:
        return None
    try:
        return payload.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return None


def header_charset(content_type: str | None) -> str | None:
    match = _HEADER.search(content_type or "")
    return match.group(1) if match else None


def decode_html(payload: bytes, content_type: str | None) -> tuple[str, str, str]:
    """Returns (text, codec name, where the charset came from)."""
    for bom, encoding in _BOMS:
        if payload.startswith(bom):
            return payload[len(bom):].decode(encoding, errors="replace"), encoding, "bom"
    text = _strict(payload, "utf-8")
    if text is not None:
        return text, "utf-8", "valid_utf8"
    for source, label in (("http", header_charset(content_type)), ("meta", _meta_charset(payload))):
        encoding = _codec(label)
        text = _strict(payload, encoding)
        if text is not None and encoding != "utf-8":
            return text, encoding, source
    # html5_compatible=True answers utf-8 when unsure; the raw uchardet guess is better here
    encoding = _codec(detect_encoding(payload, html5_compatible=False)) or "cp1252"
    return payload.decode(encoding, errors="replace"), encoding, "detected"


def _meta_charset(payload: bytes) -> str | None:
    match = _META.search(payload[:4096])
    return match.group(1).decode("ascii", errors="ignore") if match else None
