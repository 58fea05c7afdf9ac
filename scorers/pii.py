"""PII redaction: e-mail addresses and IP addresses replaced by fixed placeholders."""

import ipaddress
import re
from typing import Literal

from scorers._config import StrictModel

_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}\b")
_IPV4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")  # validated below


class PiiConfig(StrictModel):
    enabled: bool = True
    kinds: tuple[Literal["email", "ip"], ...] = ("email", "ip")
    email_replacement: str = "email@example.com"
    ip_replacement: str = "0.0.0.0"


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
