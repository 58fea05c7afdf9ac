"""The url_dedup stage's config."""

import re
from typing import Literal

from pydantic import Field, field_validator

from scorers._config import StrictModel

TRACKING_PARAMS = ("utm_*", "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "igshid",
                   "mc_cid", "mc_eid", "_ga", "_gl", "ref", "ref_src")
_PARAM_PATTERN = re.compile(r"[^\s=&#*]+\*?")


class UrlDedupConfig(StrictModel):
    """Documents with the same normalised URL (host case, default port, fragment, trailing slash, tracking
    parameters, parameter order; http = https unless `ignore_scheme: false`): one is kept by `keep`, every
    other is a reject with `reason=duplicate_url`, `detail` = the normalised URL and `duplicate_of` = the
    kept id. Documents without a URL are kept."""

    keep: Literal["newest", "longest", "first_id"] = Field(
        "newest", description="which document of a URL is kept: `newest` (latest `date`, WARC-Date; a missing or "
                              "unreadable date is the oldest), `longest` (most characters of text) or `first_id` "
                              "(smallest id); ties go to the smallest id")
    ignore_scheme: bool = Field(True, description="http:// and https:// URLs of the same host and path are the "
                                                  "same document")
    tracking_params: list[str] = Field(
        list(TRACKING_PARAMS), description="query parameters dropped before comparing (case-insensitive); "
                                           "a trailing `*` matches a prefix (`utm_*`)")
    buckets: int = Field(16, ge=1, description="normalised URLs are hash-partitioned into this many shuffle files "
                                               "(a reduce task each: memory is one bucket's URLs)")

    @field_validator("tracking_params")
    @classmethod
    def _patterns(cls, patterns: list[str]) -> list[str]:
        for i, pattern in enumerate(patterns):
            if not _PARAM_PATTERN.fullmatch(pattern):
                raise ValueError(f"[{i}] {pattern!r} is not a query parameter name (optionally ending in `*`, a "
                                 "prefix wildcard; no spaces, `=`, `&`, `#`, or `*` elsewhere)")
        return patterns
