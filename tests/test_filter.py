"""filter: each rule removes what it should, with its name as the reason; kept text is redacted."""

import pytest

from pipelines.stages import filter as filter_stage
from pipelines.stages.filter import FilterConfig
from scorers import langid, pii
from scorers.heuristics import c4, fineweb, gopher, url_blocklist
from tests.warc_factory import PROSE

GOOD = "\n\n".join(PROSE)


def doc(text, url="https://example.org/a", i=0):
    return {"id": f"d{i}", "text": text, "url": url, "source": "s", "input_file": "f", "input_offset": i}


def test_good_prose_passes_every_rule():
    assert gopher.check_quality(GOOD, gopher.GopherQualityConfig()) is None
    assert gopher.check_repetition(GOOD, gopher.GopherRepetitionConfig()) is None
    assert c4.clean(GOOD, c4.C4Config())[1] is None
    assert fineweb.check(GOOD, fineweb.FineWebConfig()) is None


@pytest.mark.parametrize(
    "text, rule",
    [
        ("Too short to be a document, with the words of it.", "min_doc_words"),
        (" ".join(["a"] * 60) + " the and", "min_avg_word_length"),
        (" ".join(["incomprehensibilities"] * 60) + " the and", "max_avg_word_length"),
        (GOOD + " #tag" * 40, "max_symbol_word_ratio"),
        ("\n".join(f"- {p}" for p in PROSE * 2), "max_bullet_lines_ratio"),
        ("\n".join(f"{p} and so on..." for p in PROSE * 2), "max_ellipsis_lines_ratio"),
        (" ".join(["1234 5678 9012"] * 30) + " " + PROSE[0], "min_alpha_words_ratio"),
        (" ".join(["Rivers flooded valleys quickly yesterday morning"] * 10), "min_stop_words"),
    ],
)
def test_gopher_quality_rules(text, rule):
    assert gopher.check_quality(text, gopher.GopherQualityConfig()) == rule


@pytest.mark.parametrize(
    "text, rule, overrides",
    [
        ("\n".join([PROSE[0]] * 5 + PROSE[1:3]), "dup_line_frac", {}),
        ("\n".join(PROSE + [PROSE[0], PROSE[1]]), "dup_line_char_frac", {}),
        ("\n\n".join([PROSE[0] + " " + PROSE[1]] * 5 + PROSE), "dup_para_frac",
         {"max_dup_line_frac": 1, "max_dup_line_char_frac": 1}),
        (" ".join(["the river rose and the river rose"] * 30), "top_2_gram_char_frac", {}),
        (" ".join(PROSE) + " " + PROSE[2] + " " + PROSE[3], "dup_5_gram_char_frac", {}),
    ],
)
def test_gopher_repetition_rules(text, rule, overrides):
    assert gopher.check_repetition(text, gopher.GopherRepetitionConfig(**overrides)) == rule


def test_c4_cleans_lines_and_rejects_documents():
    text = GOOD + "\nClick here\nPlease read our privacy policy before you continue with this page.\n"
    cleaned, failed = c4.clean(text, c4.C4Config())
    assert failed is None and "Click here" not in cleaned and "privacy policy" not in cleaned
    assert c4.clean(GOOD + "\nfunction f() { return 1; }", c4.C4Config()) == (None, "curly_bracket")
    assert c4.clean(GOOD + " Lorem ipsum dolor sit amet.", c4.C4Config()) == (None, "lorem_ipsum")
    assert c4.clean("One sentence only. Two sentences.", c4.C4Config()) == (None, "min_num_sentences")
    assert c4.clean(GOOD + "\nwidget", c4.C4Config(filter_no_terminal_punct=False))[0].endswith("widget") is False


def test_fineweb_rules():
    cfg = fineweb.FineWebConfig()
    assert fineweb.check("\n".join(["Menu item without punctuation"] * 3 + ["one."] * 0 + ["Home", "About"]), cfg) \
        == "line_punct_ratio"
    assert fineweb.check("\n".join(["Short line."] * 1 + [f"Tiny {i}." for i in range(20)]), cfg) == "short_line_ratio"
    assert fineweb.check("\n".join(PROSE + [PROSE[0]]), cfg) == "char_dup_ratio"
    listy = "\n".join(f"{p.split()[0]} {p.split()[1]} x." for p in PROSE * 3)
    assert fineweb.check(listy, fineweb.FineWebConfig(max_short_line_ratio=1.1, max_char_dup_ratio=1)) == "list_ratio"


def test_url_blocklist(tmp_path):
    listing = tmp_path / "domains.txt"
    listing.write_text("# comment\nbad.example\n")
    cfg = url_blocklist.UrlBlocklistConfig(domains_file=str(listing), patterns=[r"/casino/"])
    assert url_blocklist.check("https://bad.example/page", cfg) == "domain"
    assert url_blocklist.check("https://www.sub.bad.example/page", cfg) == "domain"
    assert url_blocklist.check("https://notbad.example/page", cfg) is None
    assert url_blocklist.check("https://ok.example/casino/1", cfg) == "pattern"


def test_pii_redaction():
    text = "Mail jane.doe@example.org or ops@mail.example.co.uk; server 192.168.1.20 and 2001:db8::1:2:3:4, v1.2.3.4000"
    out, n = pii.redact(text, pii.PiiConfig())
    assert "jane.doe" not in out and "192.168.1.20" not in out and "2001:db8" not in out
    assert "v1.2.3.4000" in out  # not an IP address
    assert n == 4
    out, n = pii.redact(text, pii.PiiConfig(kinds=["email"]))
    assert "192.168.1.20" in out and n == 2


def test_language_id_on_shipped_model():
    cfg = langid.LanguageConfig()
    (en, en_score), (de, _) = langid.identify([GOOD, "Die Dokumentation des Servers ist in vielen Sprachen verfügbar."],
                                              cfg)
    assert en == "en" and en_score > 0.9 and de == "de"
    assert langid.check(de, 0.99, cfg) == "not_allowed"
    assert langid.check("en", 0.3, cfg) == "low_score"


def test_filter_stage_end_to_end():
    docs = [
        doc(GOOD, i=0),
        doc(GOOD, url="https://blocked.example/x", i=1),
        doc("Die Dokumentation des Servers ist in vielen Sprachen verfügbar. " * 20, i=2),
        doc("Too short, yes it is and the end.", i=3),
        doc(GOOD + "\nWrite to jane@example.org for details.", i=4),
    ]
    cfg = FilterConfig(url_blocklist={"domains": ["blocked.example"]})
    result = filter_stage.run(docs, cfg)
    assert {r["id"]: r["reason"] for r in result.rejects} == {
        "d1": "url_blocklist.domain", "d2": "language.not_allowed", "d3": "gopher_quality.min_doc_words"}
    kept = {d["id"]: d for d in result.docs}
    assert set(kept) == {"d0", "d4"}
    assert kept["d4"]["pii_redactions"] == 1 and "jane@" not in kept["d4"]["text"]
    assert kept["d0"]["language"] == "en" and kept["d0"]["language_score"] > 0.65
    assert result.errors == []


def test_disabled_rules_are_skipped():
    cfg = FilterConfig(language={"enabled": False}, gopher_quality={"enabled": False}, c4={"enabled": False},
                       fineweb={"enabled": False}, gopher_repetition={"enabled": False})
    result = filter_stage.run([doc("Kurz.")], cfg)
    assert len(result.docs) == 1 and result.docs[0].get("language") is None


def test_rules_that_are_off_do_not_count_in_fingerprints():
    """A rule that is off changes nothing, so neither its settings nor a new rule that ships off may
    invalidate finished work; a rule that is on does count."""
    from pydantic import create_model

    from pipelines.phase import fingerprint_data
    from scorers.rule import RuleConfig

    off = fingerprint_data(FilterConfig(c4={"enabled": False}))
    assert "c4" not in off
    assert fingerprint_data(FilterConfig(c4={"enabled": False, "min_num_sentences": 9})) == off
    assert fingerprint_data(FilterConfig(c4={"min_num_sentences": 9})) != fingerprint_data(FilterConfig())

    class NewRuleConfig(RuleConfig):
        threshold: float = 0.5

    shipped_off = NewRuleConfig(enabled=False)
    with_new_rule = create_model("Filter2", __base__=FilterConfig, new_rule=(NewRuleConfig, shipped_off))
    assert fingerprint_data(with_new_rule()) == fingerprint_data(FilterConfig())
    assert fingerprint_data(with_new_rule(new_rule={"enabled": True})) != fingerprint_data(FilterConfig())
