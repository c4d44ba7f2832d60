"""Releasing streamed text as soon as no rule can still match it: property tests (hypothesis,
seeded and bounded) that a stream cut anywhere sends exactly what the whole text gives, that
what :mod:`hearth.safety.reach` calls settled never changes when text is appended, and that
ordinary prose is held back by at most the word being written."""

from __future__ import annotations

import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hearth.safety.pii import detectors
from hearth.safety.policy import Policy, SafetyConfig
from hearth.safety.reach import reach_of
from hearth.safety.rules import compile_pattern
from hearth.safety.scan import StreamFilter, screen_text

PATTERNS = {
    "codename": "PROJECT-[A-Z]{4}",
    "code": r"\bcode\d{2,3}\b",
    "tail": "end$",
    "ahead": "x(?=yz)",
    "unless": r"(?!abc)ab\w",
    "loose": "(?i)zz+y",
    "ticket": r"TICKET-\d{6}",
}
REDACTING = SafetyConfig.from_table(
    {
        "default": {
            "pii": "redact",
            "blocklist": ["forbidden word", "codeword"],
            "blocklist_action": "redact",
            "patterns": PATTERNS,
            "pattern_action": "redact",
        }
    }
).policy(None, "m")
BLOCKING = SafetyConfig.from_table(
    {
        "default": {
            "pii": {"email": "block", "card": "log", "phone": "redact", "secret": "redact"},
            "blocklist": ["forbidden word"],
            "patterns": {"codename": PATTERNS["codename"], "tail": PATTERNS["tail"]},
        }
    }
).policy(None, "m")
FRAGMENTS = [
    "bob@example.com", "bob@exa", "4111 1111 1111 1111", "4111-1111", "+44 20 7946 0958",
    "GB82 WEST 1234 5698 7654 32", "10.0.0.1", "2001:db8::1", "AB 12 34 56 C", "123-45-6789",
    "sk-proj-Zx8Qp2Lm9Rt4Vb7Nc1Kd6Hf3", "ghp_" + "a1B2" * 9, "Zx8Qp2Lm9Rt4Vb7Nc1Kd6Hf3aB9w",
    "PROJECT-ABCD", "PROJECT-", "forbidden", "word", "forbidden word", "Forbidden\n word",
    "code42", "codeword", "end", "xyz", "abd", "abc", "zZzy", "TICKET-123456", "the", "A",
    " ", "  ", ".", ",", "-", "@", ":", "\n", "1", "12", "2024",
    "FORB\u0130DDEN", "forbidden\u00a0word", "\u212aODEWORD", "\u65e5\u672c\u8a9e", "\u00e9",
]  # fmt: skip
TEXTS = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.text("aAbz019 .-@:+_/\n", max_size=3)), max_size=25
).map("".join)
PROPERTY = settings(
    max_examples=300,
    derandomize=True,  # seeded: the same examples every run
    deadline=None,  # eight engineers share two cores: time is not the property
    suppress_health_check=[HealthCheck.too_slow],
)


def streamed(policy: Policy, pieces: list[str]) -> tuple[str, StreamFilter]:
    flt = StreamFilter(policy, hold_back=policy.hold_back)
    sent = []
    for piece in pieces:
        step = flt.feed(piece)
        sent.append(step.text)
        if step.blocked is not None:
            return "".join(sent), flt
    sent.append(flt.finish().text)
    return "".join(sent), flt


@st.composite
def split_texts(draw: st.DrawFn) -> tuple[str, list[str]]:
    text = draw(TEXTS)
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(text) - 1)), max_size=len(text))))
    cuts = [c for c in cuts if 0 < c < len(text)]
    return text, [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


@PROPERTY
@given(split_texts(), st.sampled_from([REDACTING, BLOCKING]))
def test_any_split_sends_exactly_what_the_whole_text_gives(
    case: tuple[str, list[str]], policy: Policy
) -> None:
    text, pieces = case
    whole, blocked, decisions = screen_text(policy, text)
    sent, flt = streamed(policy, pieces)
    assert sent == whole
    assert flt.blocked == blocked
    assert flt.decisions == decisions


@PROPERTY
@given(TEXTS)
def test_one_character_at_a_time_sends_what_the_whole_text_gives(text: str) -> None:
    for policy in (REDACTING, BLOCKING):
        whole, blocked, _ = screen_text(policy, text)
        sent, flt = streamed(policy, list(text))
        assert sent == whole and flt.blocked == blocked


PATTERN_SOURCES = [
    *(d.pattern for d in detectors()),
    *(compile_pattern(source, "test") for source in PATTERNS.values()),
    *(rule.rule.pattern for rule in REDACTING.rules if rule.category == "blocklist"),
]


@PROPERTY
@given(st.sampled_from(PATTERN_SOURCES), TEXTS, TEXTS)
def test_what_reach_calls_settled_never_changes_when_text_is_appended(
    pattern: regex.Pattern[str], text: str, more: str
) -> None:
    reach = reach_of(pattern)
    assert reach is not None
    open_at = reach.leftmost_open(text, 0)
    now = [m.span() for m in pattern.finditer(text) if m.start() < open_at]
    later = [m.span() for m in pattern.finditer(text + more) if m.start() < open_at]
    assert now == later


def test_prose_is_held_back_by_at_most_the_word_being_written() -> None:
    flt = StreamFilter(REDACTING)
    text = ""
    sentence = "there was a little house, and in the house lived an old man."
    for token in sentence.split():
        step = flt.feed(" " + token)
        assert not step.blocked
        text += step.text
    assert text == " there was a little house, and in the house lived an old "  # not "man."
    assert flt.finish().text == "man."


def test_a_leading_space_is_sent_at_once_and_a_word_once_it_ends() -> None:
    flt = StreamFilter(REDACTING)
    assert flt.feed(" Once").text == " "
    assert flt.feed(" upon").text == "Once "
    assert flt.feed(",").text == "upon,"


def test_text_that_may_become_a_match_waits_for_it() -> None:
    flt = StreamFilter(REDACTING)
    assert flt.feed("mail bob@example.co").text == "mail "
    assert flt.feed("m now").text == "[EMAIL] "
    assert flt.feed(" card 4111 1111").text == "now card "
    assert flt.feed(" 1111 1111 and").text == "[CARD] "


def test_a_pattern_without_a_reach_falls_back_to_the_window() -> None:
    """An unbounded look-ahead has no bound on what it reads: its rule holds the last
    ``hold_back`` characters, as every rule did before reaches were worked out."""
    table = {"hold_back": 16, "default": {"patterns": {"id": r"id(?=\d+-)\d{3}"}}}
    policy = SafetyConfig.from_table(table).policy(None, "m")
    assert reach_of(policy.rules[0].rule.pattern) is None
    flt = StreamFilter(policy, hold_back=policy.hold_back)
    assert flt.feed("a" * 40).text == "a" * 24
    assert flt.feed(" id123").text == "a" * 6
    assert flt.feed("-").text == "a"  # the window moves on; the match is still in it
    step = flt.finish()
    assert step.blocked is not None and step.text == "a" * 9 + " "
