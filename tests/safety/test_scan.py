"""The stream filter: redaction before sending, blocking mid-stream, split invariance,
bounded delay, and time linear in the text."""

from __future__ import annotations

import random
import time

import pytest

from hearth.safety.policy import Policy, SafetyConfig
from hearth.safety.scan import StreamFilter, screen_text

SECRET = "sk-proj-Zx8Qp2Lm9Rt4Vb7Nc1Kd6Hf3"
TEXTS = [
    f"Here is the key {SECRET}, keep it safe.",
    "Mail bob@example.com or call +44 20 7946 0958; card 4111 1111 1111 1111.",
    "IBAN GB82 WEST 1234 5698 7654 32 and host 10.0.0.1 and PROJECT-ABCD here.",
    "Nothing to see here, just a plain sentence about the weather " * 3,
    "the forbidden word arrives late, after a long and innocent preamble of text",
    "AB 12 34 56 C and 123-45-6789 and 2001:db8::1 and ghp_" + "a1B2" * 9,
]


def policy(**profile: object) -> Policy:
    table = {"default": {"pii": "redact", "patterns": {"codename": "PROJECT-[A-Z]{4}"}, **profile}}
    return SafetyConfig.from_table(table).policy(None, "m")


def stream(p: Policy, pieces: list[str]) -> tuple[list[str], StreamFilter]:
    """What a stream filter sends for ``pieces``, delta by delta."""
    flt = StreamFilter(p, hold_back=p.hold_back)
    sent = []
    for piece in pieces:
        step = flt.feed(piece)
        sent.append(step.text)
        if step.blocked:
            return sent, flt
    sent.append(flt.finish().text)
    return sent, flt


def random_split(text: str, rng: random.Random) -> list[str]:
    cuts = sorted(rng.sample(range(1, len(text)), k=min(len(text) - 1, rng.randint(1, 30))))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


def test_a_secret_split_across_deltas_is_redacted_before_any_of_it_is_sent() -> None:
    p = policy()
    text = TEXTS[0]
    whole, _, _ = screen_text(p, text)
    assert whole == "Here is the key [SECRET], keep it safe."
    sent, _ = stream(p, list(text))  # one character per delta
    so_far = ""
    for piece in sent:
        so_far += piece
        assert whole.startswith(so_far)  # never a character that the whole answer redacts
        assert "sk-" not in so_far
    assert so_far == whole


@pytest.mark.parametrize("seed", range(40))
def test_any_split_sends_what_the_whole_text_gives(seed: int) -> None:
    rng = random.Random(seed)
    p = policy(blocklist=["forbidden word"])
    for text in TEXTS:
        whole, blocked, _ = screen_text(p, text)
        sent, flt = stream(p, random_split(text, rng))
        assert "".join(sent) == whole, text
        assert (flt.blocked is None) == (blocked is None)


def test_a_block_rule_stops_the_stream_before_the_match_is_sent() -> None:
    p = policy(blocklist=["forbidden word"])
    sent, flt = stream(p, [w + " " for w in TEXTS[4].split(" ")])
    assert "".join(sent) == "the "
    assert flt.blocked is not None and flt.blocked.rule == "blocklist"
    assert flt.decisions[("blocklist", "blocklist", "block")] == 1


def test_hold_back_delays_text_by_at_most_the_window() -> None:
    p = policy()
    text = TEXTS[3]
    sent, _ = stream(p, list(text))
    assert len("".join(sent[: len(text) - p.hold_back + 1])) > 0
    for index in range(len(text)):
        assert len("".join(sent[: index + 1])) >= index + 1 - p.hold_back


def test_decisions_count_each_rule_once_per_match() -> None:
    p = policy(pii={"email": "log", "card": "block"})
    _, _, decisions = screen_text(p, "a@b.co and c@d.co; card 4111 1111 1111 1111")
    assert decisions[("pii.email", "pii", "log")] == 2
    assert decisions[("pii.card", "pii", "block")] == 1


@pytest.mark.parametrize("unit", ["a", "ab1+", "a@b.", "4111 ", "sk-", "forbidden "])
def test_streaming_time_is_linear_in_the_text(unit: str) -> None:
    """8x the text in the same deltas: about 8x the time (24x allows for a busy machine)."""
    p = policy(blocklist=["forbidden word"])

    def run(size: int) -> float:
        pieces = [unit] * (size // len(unit))
        times = []
        for _ in range(3):
            started = time.perf_counter()
            stream(p, pieces)
            times.append(time.perf_counter() - started)
        return min(times)

    small, large = run(1_000), run(8_000)
    assert large < max(small, 0.002) * 24, (small, large)


def test_a_rule_past_its_time_limit_blocks_at_once() -> None:
    """(a|aa)+$ passes the static check but backtracks exponentially: the time limit stops
    it, and the text is blocked (fail closed) instead of being sent unchecked."""
    table = {"regex_timeout_ms": 5, "default": {"patterns": {"slow": "(?:a|aa)+$"}}}
    p = SafetyConfig.from_table(table).policy(None, "m")
    text = "a" * 5000 + "b"
    _, blocked, decisions = screen_text(p, text)
    assert blocked is not None and blocked.category == "timeout"
    assert decisions[("pattern.slow", "timeout", "block")] == 1
    sent, flt = stream(p, ["fine text. ", text, "more"])
    assert "".join(sent) == "fine text. "  # settled before the slow text came; none of it
    assert flt.blocked is not None and flt.blocked.category == "timeout"
