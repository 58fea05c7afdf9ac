"""The rating prompt (modelled on DataMan's), head + tail truncation, and strict answer parsing."""

import json
import re

from scorers.dataman import CRITERIA, DOMAINS, RATINGS

PROMPT_VERSION = "dataman-v2"  # v2: definitions matched to the paper's (cached v1 answers are not reused)
# The paper's 14 criteria (13 here + overall_score), each rated on the text itself: accuracy is about
# errors in the writing, not world knowledge; originality is about repetition and copying, creativity
# about inventive expression; professionalism about the expertise the text shows.
_DESCRIPTIONS = {
    "accuracy": "free of errors in the text itself: spelling, grammar, punctuation, wrong references "
                "(names, numbers, pronouns), factual slips; judge the writing, not your own world knowledge",
    "coherence": "sentences and paragraphs connect logically and read fluently, without abrupt jumps",
    "language_consistency": "written in one language throughout, without unwarranted switching between languages",
    "semantic_density": "useful information per word; no filler, padding or redundancy",
    "knowledge_novelty": "offers knowledge, insight or information that is new or non-obvious",
    "topic_focus": "stays on one central topic, without unrelated digressions, ads or navigation text",
    "creativity": "imaginative or inventive expression, ideas or perspectives",
    "professionalism": "depth of professional or specialised knowledge the text shows and needs to be understood",
    "style_consistency": "one consistent writing style, tone and formatting throughout",
    "grammatical_diversity": "variety and complexity of sentence structures and grammar",
    "structural_standardization": "follows a standard, clean structure and layout for its kind of text "
                                  "(paragraphs, headings, lists where apt)",
    "originality": "not repetitive and not copied: no repeated sentences or passages, duplicated templates "
                   "or boilerplate",
    "sensitivity": "free of sensitive content (violence, sexual content, discrimination, hate, private data; "
                   "5 = none)",
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
