"""URL block list: registered domains (and their subdomains) and regex patterns."""

import functools
import re
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from scorers.rule import Rule, RuleConfig


class UrlBlocklistConfig(RuleConfig):
    """Documents whose URL is on a block list: `domain`, `pattern` (detail: the URL)."""

    domains: tuple[str, ...] = Field((), description="registered domains; their subdomains match too")
    domains_file: str | None = Field(None, description="a file of domains, one per line, `#` comments")
    patterns: tuple[str, ...] = Field((), description="regular expressions searched in the full URL")

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        for p in patterns:
            try:
                re.compile(p)
            except re.error as exc:
                raise ValueError(f"pattern {p!r} is not a valid regular expression: {exc}") from exc
        return patterns


@functools.lru_cache(maxsize=8)
def _load_domains(domains: tuple[str, ...], domains_file: str | None) -> frozenset[str]:
    found = {d.strip().lower().lstrip(".") for d in domains if d.strip()}
    if domains_file:
        import fsspec

        with fsspec.open(domains_file, "rt", encoding="utf-8") as fh:
            for line in fh:
                line = line.split("#", 1)[0].strip().lower()
                if line:
                    found.add(line.lstrip("."))
    return frozenset(found)


@functools.lru_cache(maxsize=8)
def _compile(patterns: tuple[str, ...]) -> re.Pattern | None:
    return re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None


def check(url: str | None, cfg: UrlBlocklistConfig) -> str | None:
    if not url:
        return None
    host = (urlsplit(url).hostname or "").lower()
    blocked = _load_domains(cfg.domains, cfg.domains_file)
    parts = host.split(".")
    if any(".".join(parts[i:]) in blocked for i in range(len(parts))):
        return "domain"
    pattern = _compile(cfg.patterns)
    if pattern is not None and pattern.search(url):
        return "pattern"
    return None


RULE = Rule("url_blocklist", UrlBlocklistConfig, lambda doc, cfg: check(doc.get("url"), cfg), detail="url",
            needs_text=False)
