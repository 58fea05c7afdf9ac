"""PII redaction: e-mail addresses and IP addresses replaced by fixed placeholders."""

import ipaddress
import re
from typing import Literal

import pyarrow as pa
from pydantic import Field

from scorers.rule import Rule, RuleConfig

_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}\b")
_IPV4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")  # validated below


class PiiConfig(RuleConfig):
    """PII redaction in kept documents (never a reject); adds `pii_redactions`."""

    kinds: tuple[Literal["email", "ip"], ...] = Field(("email", "ip"), description="what is redacted")
    email_replacement: str = Field("email@example.com", description="replaces every e-mail address")
    ip_replacement: str = Field("0.0.0.0", description="replaces every IPv4/IPv6 address")


def redact(text: str, cfg: PiiConfig) -> tuple[str, int]:
    """Returns the redacted text and the number of replacements."""
    total = 0
    if "email" in cfg.kinds:
        text, n = _EMAIL.subn(cfg.email_replacement, text)
        total += n
    if "ip" in cfg.kinds:
        def replace_ip(match: re.Match) -> str:
            nonlocal total
            try:
                ipaddress.ip_address(match.group(0))
            except ValueError:  # e.g. version numbers like 1.2.3.999
                return match.group(0)
            total += 1
            return cfg.ip_replacement

        text = _IPV4.sub(replace_ip, text)
        text = _IPV6.sub(replace_ip, text)
    return text, total


def _redact(doc: dict, cfg: PiiConfig) -> None:
    doc["text"], doc["pii_redactions"] = redact(doc["text"], cfg)


RULE = Rule("pii", PiiConfig, _redact, columns=(pa.field("pii_redactions", pa.int32()),), count="pii_redactions")
