"""Builds small WARC files for edge-case tests: one gzip member per record, as Common Crawl does."""

import gzip
import uuid


def warc_record(warc_type: str, uri: str, block: bytes, record_id: str | None = None) -> bytes:
    rid = record_id or str(uuid.uuid5(uuid.NAMESPACE_URL, f"{warc_type}:{uri}"))
    content_type = {
        "response": "application/http; msgtype=response",
        "request": "application/http; msgtype=request",
        "conversion": "text/plain",
        "warcinfo": "application/warc-fields",
    }[warc_type]
    head = (
        f"WARC/1.0\r\nWARC-Type: {warc_type}\r\nWARC-Record-ID: <urn:uuid:{rid}>\r\n"
        f"WARC-Target-URI: {uri}\r\nWARC-Date: 2026-11-20T00:00:00Z\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(block)}\r\n\r\n"
    ).encode()
    return head + block + b"\r\n\r\n"


def http_response(body: bytes, status: int = 200, content_type: str | None = "text/html; charset=utf-8",
                  reason: str = "OK") -> bytes:
    head = f"HTTP/1.1 {status} {reason}\r\n"
    if content_type is not None:
        head += f"Content-Type: {content_type}\r\n"
    head += f"Content-Length: {len(body)}\r\n\r\n"
    return head.encode("latin-1") + body


def response(uri: str, body: bytes, **http) -> bytes:
    """A gzip member holding one response record."""
    return gzip.compress(warc_record("response", uri, http_response(body, **http)), mtime=0)


def request(uri: str) -> bytes:
    return gzip.compress(warc_record("request", uri, f"GET {uri} HTTP/1.1\r\n\r\n".encode()), mtime=0)


def html_page(paragraphs: list[str], title: str = "A page") -> str:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return f"<html><head><title>{title}</title></head><body><article>{body}</article></body></html>"


PROSE = [
    "The river rose slowly through the night, and by morning the fields near the old mill were under water.",
    "Farmers who had lived in the valley for decades said they had never seen the water climb so quickly.",
    "Volunteers from the town arrived with sandbags and worked with the families to protect the grain stores.",
    "By the afternoon the rain had stopped, and the level of the river began to fall back toward its banks.",
    "The council has promised to study the flood and to publish a plan for the embankment before the winter.",
    "Many of the people in the valley believe that the old drainage channels should be cleared and widened.",
]
