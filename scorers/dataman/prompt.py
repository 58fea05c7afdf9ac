"""The rating prompt (modelled on DataMan's), head + tail truncation, and strict answer parsing."""

import json
import re

from scorers.dataman import CRITERIA, DOMAINS, RATINGS

PROMPT_VERSION = "dataman-v1"
_DESCRIPTIONS = {
    "accuracy": "facts are correct, no errors in spelling, grammar or logic",
    "coherence": "ideas connect and flow logically",
    "language_consistency": "one language and register throughout",
    "semantic_density": "information per word; no filler",
    "knowledge_novelty": "offers knowledge that is new or non-obvious",
    "topic_focus": "stays on one topic",
    "creativity": "original expression or ideas",
    "professionalism": "expert, domain-appropriate treatment",
    "style_consistency": "uniform style and formatting",
    "grammatical_diversity": "varied sentence structures",
    "structural_standardization": "well organised (headings, paragraphs, lists where apt)",
    "originality": "not boilerplate, spam or copied templates",
    "sensitivity": "free of harmful, private or offensive content (5 = fully safe)",
}


class MalformedAnswer(ValueError):
    pass


def truncate_head_tail(text: str, max_chars: int) -> str:
    """Long documents keep their beginning and end (the paper rates head + tail)."""
    if len(text) <= max_chars:
        return text
    marker = "\n[... truncated ...]\n"
    half = max(1, (max_chars - len(marker)) // 2)
    return f"{text[:half]}{marker}{text[-half:]}"


def build_messages(text: str, max_chars: int) -> list[dict]:
    criteria = "\n".join(f"- {name}: {_DESCRIPTIONS[name]}" for name in CRITERIA)
    keys = ", ".join(f'"{r}": 1-5' for r in RATINGS)
    system = (
        "You are a data quality annotator for language-model pre-training. Rate the document on each "
        "criterion from 1 (very poor) to 5 (excellent), give an overall_score judged holistically (not an "
        f"average), and choose its domain.\nCriteria:\n{criteria}\nDomains: {', '.join(DOMAINS)}.\n"
        f'Answer with one JSON object only: {{{keys}, "domain": "<one of the domains>"}}'
    )
    return [{"role": "system", "content": system},
            {"role": "user", "content": f"Document:\n<<<\n{truncate_head_tail(text, max_chars)}\n>>>"}]


_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


def parse_answer(content: str) -> dict:
    """{'ratings': {name: 1..5}, 'domain': str}, or MalformedAnswer with the reason."""
    match = _OBJECT.search(content or "")
    if not match:
        raise MalformedAnswer("no JSON object in the answer")
    try:
        answer = json.loads(match.group(0))
    except json.JSONDecodeError as exc:
        raise MalformedAnswer(f"invalid JSON: {exc}") from None
    ratings = {}
    for name in RATINGS:
        value = answer.get(name)
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 5:
            raise MalformedAnswer(f"{name} must be an integer 1-5, got {value!r}")
        ratings[name] = value
    domain = str(answer.get("domain", "")).strip().lower().replace(" ", "_").replace("-", "_")
    if domain == "retail_e_commerce":
        domain = "retail_ecommerce"
    if domain not in DOMAINS:
        raise MalformedAnswer(f"unknown domain {answer.get('domain')!r}")
    return {"ratings": ratings, "domain": domain}
