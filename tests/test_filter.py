"""filter: each rule removes what it should, with its name as the reason; kept text is redacted."""

import pytest

from pipelines.stages import filter as filter_stage
from pipelines.stages.filter import FilterConfig
from scorers import langid, pii
from scorers.heuristics import c4, fineweb, gopher, text_utils, url_blocklist
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
        (GOOD + " #tag" * 40, "hash_word_ratio"),
        (GOOD + " and so on..." * 30, "ellipsis_word_ratio"),
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
    assert c4.clean(GOOD + "\nwidget one two", c4.C4Config())[0].endswith("widget one two")  # FineWeb's setting
    assert not c4.clean(GOOD + "\nwidget one two", c4.C4Config(filter_no_terminal_punct=True))[0].endswith("two")


def test_c4_counts_sentences_per_kept_line():
    """C4 (and datatrove) split each kept line into sentences, every line counting at least one; lines
    that are dropped count none."""
    lines = ["Install the package with pip", "Then run the server locally", "Open the browser at the port",
             "Read the logs when it fails", "Stop it with control and c"]  # no terminal punctuation
    assert c4.clean("\n".join(lines), c4.C4Config()) == ("\n".join(lines), None)  # 5 lines, 5 sentences
    assert c4.clean("\n".join(lines[:4]), c4.C4Config())[1] == "min_num_sentences"
    assert c4.clean("\n".join(lines[:4] + ["ok", "no"]), c4.C4Config())[1] == "min_num_sentences"  # too short
    assert c4.clean("\n".join(lines[:3] + ["It works. It stops. It is done."]), c4.C4Config())[1] is None
    assert text_utils.sentence_count("It works. It stops. It is done.") == 3
    assert text_utils.sentence_count("See e.g. the manual for version 3.2 first.") == 1  # a regex finds 2
    assert text_utils.sentence_count("Done!! Next one?! Last") == 3


def test_c4_bracket_and_lorem_ipsum_only_on_kept_lines():
    lines = [p for p in PROSE]
    assert c4.clean("\n".join(lines + ["{"]), c4.C4Config())[1] is None  # a one-word line is dropped first
    assert c4.clean("\n".join(lines + ["lorem ipsum"]), c4.C4Config())[1] is None
    assert c4.clean("\n".join(lines + ["Enable javascript to see {this}"]), c4.C4Config())[1] is None
    assert c4.clean("\n".join(lines + ["a {b} c"]), c4.C4Config())[1] == "curly_bracket"


def test_gopher_alpha_ratio_counts_punctuation_tokens():
    """Gopher's share of words with a letter is taken over spaCy's tokens, punctuation tokens included
    (datatrove's reading, which made FineWeb's data); whitespace tokens keep it."""
    text = " ".join(f"{w} ({w}), [{w}]: {w}." for w in GOOD.split()[:30]) + " " + GOOD
    assert gopher.check_quality(text, gopher.GopherQualityConfig()) == "min_alpha_words_ratio"
    assert gopher.check_quality(text, gopher.GopherQualityConfig(words="whitespace")) is None
    assert text_utils.words("Hello, world (again).") == ("Hello", ",", "world", "(", "again", ")", ".")


def test_gopher_stop_words_are_distinct_and_as_written():
    text = " ".join(["Rivers flooded the valleys quickly yesterday morning"] * 10)
    assert gopher.check_quality(text, gopher.GopherQualityConfig(max_ellipsis_lines_ratio=1)) == "min_stop_words"
    assert gopher.check_quality(text + " with", gopher.GopherQualityConfig()) is None
    upper = " ".join(["The rivers rose and flooded valleys"] * 10)  # "The" is not "the"; "and" is one
    assert gopher.check_quality(upper, gopher.GopherQualityConfig()) == "min_stop_words"
    assert gopher.check_quality(upper, gopher.GopherQualityConfig(stop_words_ignore_case=True)) is None


def test_gopher_hash_and_ellipsis_ratios_are_separate():
    n = len(text_utils.words(GOOD))
    text = GOOD + " #" * (n // 15) + " ..." * (n // 15)  # each about 0.06 per token, together above 0.1
    assert gopher.check_quality(text, gopher.GopherQualityConfig()) is None


def test_gopher_whitespace_only_lines_are_duplicate_lines():
    text = "\n".join(p + "\n   " for p in PROSE)  # six lines of spaces: five repeat the first
    assert gopher.check_repetition(text, gopher.GopherRepetitionConfig()) == "dup_line_frac"
    assert gopher.check_repetition("\n".join(PROSE), gopher.GopherRepetitionConfig()) is None


def test_gopher_dup_ngrams_as_datatrove_scans_them():
    # datatrove joins an n-gram's words without spaces and skips n words after a repeat
    concat = gopher._Concatenations(("ab", "c", "x", "a", "bc"))
    assert gopher._dup_ngram_chars(concat, 2) == 3  # "abc" again, though its words differ
    words = tuple("a b c d e a b c d e a b c d e".split())
    assert gopher._dup_ngram_chars(gopher._Concatenations(words), 5) == 10  # two repeats, no overlaps


def test_fineweb_thresholds_are_strict_and_punctuation_unicode():
    cfg = fineweb.FineWebConfig(max_char_dup_ratio=1)
    lines = [PROSE[0], "A short line here."]  # half of the lines are short: not above 0.5
    assert fineweb.check("\n".join(lines), fineweb.FineWebConfig(max_short_line_ratio=0.5, **{
        "max_char_dup_ratio": 1, "max_newline_word_ratio": 1})) is None
    cjk = "\n".join(["这是一个很长的句子，用来说明中文的句号也是句子的结尾标点符号。"] * 1 + ["另一行文字没有标点"] * 7)
    assert fineweb.check(cjk, cfg) != "line_punct_ratio"  # 1 of 8 lines ends in 。: 0.125 >= 0.12
    hindi = "\n".join(["यह एक लंबा वाक्य है जो हिंदी में लिखा गया है और पूर्ण विराम पर समाप्त होता है।"] + ["कोई विराम नहीं"] * 7)
    assert fineweb.check(hindi, cfg) != "line_punct_ratio"


def test_recipes_preset_the_rules():
    gopher_cfg = FilterConfig(recipe="gopher", gopher_quality={"min_doc_words": 10})
    assert not gopher_cfg.c4.enabled and not gopher_cfg.fineweb.enabled
    assert gopher_cfg.gopher_quality.words == "whitespace" and gopher_cfg.gopher_quality.min_doc_words == 10
    assert gopher_cfg.gopher_quality.bullets == gopher.PAPER_BULLETS
    c4_cfg = FilterConfig(recipe="c4", c4={"min_num_sentences": 3})
    assert c4_cfg.c4.filter_no_terminal_punct and c4_cfg.c4.min_num_sentences == 3
    assert not (c4_cfg.gopher_quality.enabled or c4_cfg.gopher_repetition.enabled or c4_cfg.fineweb.enabled)
    default = FilterConfig()
    assert default.recipe == "fineweb" and not default.c4.filter_no_terminal_punct
    assert FilterConfig(recipe="gopher", c4={"enabled": True}).c4.enabled  # a setting given wins
    with pytest.raises(ValueError):
        FilterConfig(recipe="refinedweb")


def test_words_follow_the_document_language(monkeypatch):
    text = "Das ist z.B. ein Test."
    assert "z.B." in text_utils.words(text, language="de") and "z.B." not in text_utils.words(text)
    assert text_utils.splitter("zz").nlp.lang == "xx"  # no tokenizer for the language: spaCy's multi-language one
    languages = []
    split = gopher.words
    monkeypatch.setattr(gopher, "words", lambda text, how, language: languages.append(language) or split(text, how,
                                                                                                        language))
    german = ("Die Dokumentation des Servers ist in vielen Sprachen verfügbar. Sie beschreibt die Module, die "
              "Konfiguration und den Betrieb. Wer einen neuen Server einrichtet, liest zuerst die Einführung.")
    filter_stage.run([doc(german)], FilterConfig(language={"languages": None}))
    assert set(languages) == {"de"}


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
    # a short text fails Gopher's top 2-gram share of its characters (FineWeb's order: repetition first)
    assert {r["id"]: r["reason"] for r in result.rejects} == {
        "d1": "url_blocklist.domain", "d2": "language.not_allowed", "d3": "gopher_repetition.top_2_gram_char_frac"}
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
