"""Administrator patterns: dangerous ones refused when configured, matching time-limited."""

from __future__ import annotations

import pytest
import regex

from hearth.errors import ConfigError, UnsafePatternError
from hearth.safety.policy import SafetyConfig
from hearth.safety.rules import Rule, RuleTimeout, blocklist_pattern, compile_pattern


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("(a+)+$", "nested quantifiers"),
        ("(a*)*b", "nested quantifiers"),
        ("(?:x+y?)+z", "nested quantifiers"),
        ("((ab)*c)+", "nested quantifiers"),
        ("([a-z]+\\d{2,})*!", "nested quantifiers"),
        ("(a|b)\\1", "back-references"),
        ("(?P<q>['\"]).*(?P=q)", "back-references"),
        ("x?", "matches the empty string"),
        ("a*", "matches the empty string"),
        ("(unclosed", "invalid regular expression"),
        ("a" * 1001, "longer than 1000"),
        ("", "non-empty string"),
    ],
)
def test_dangerous_or_broken_patterns_are_refused(pattern: str, reason: str) -> None:
    with pytest.raises(UnsafePatternError, match=reason) as refused:
        compile_pattern(pattern, "hearth.toml [safety.default] patterns.x")
    assert "hearth.toml [safety.default] patterns.x" in str(refused.value)


@pytest.mark.parametrize(
    "pattern",
    [
        "PROJECT-[A-Z]{4}",
        "(?:\\d{3}-){2}\\d{4}",  # bounded repeats nested in a bounded repeat
        "(?i)\\bconfidential\\b",
        "[a-z]+@corp\\.example",
        "(?:foo|bar)+baz",
    ],
)
def test_ordinary_patterns_are_accepted(pattern: str) -> None:
    compile_pattern(pattern, "here")


def test_a_malicious_pattern_in_hearth_toml_is_refused_with_where() -> None:
    table = {"keys": {"app-1": {"patterns": {"evil": "(a+)+$"}}}}
    with pytest.raises(ConfigError) as refused:
        SafetyConfig.from_table(table, "/home/h/hearth.toml")
    message = str(refused.value)
    assert message.startswith("/home/h/hearth.toml [safety] 'app-1' patterns.evil: pattern")
    assert "nested quantifiers" in message and "\n" not in message


def test_matching_has_a_time_limit() -> None:
    """A pattern that passes the static check but backtracks (overlapping alternatives) is
    stopped by the time limit instead of stalling the request."""
    slow = regex.compile("(?:a|aa)+$")
    rule = Rule("pattern.slow", slow, timeout_s=0.05)
    with pytest.raises(RuleTimeout, match=r"pattern\.slow"):
        rule.spans("a" * 5000 + "b")


def test_blocklist_matches_whole_words_and_phrases_case_insensitively() -> None:
    pattern = blocklist_pattern(["secret plan", "foo"], "where")
    text = "The SECRET   plan is food for foo."
    assert [m.group() for m in pattern.finditer(text)] == ["SECRET   plan", "foo"]
    with pytest.raises(UnsafePatternError, match="where\\[1\\]"):
        blocklist_pattern(["ok", "  "], "where")
