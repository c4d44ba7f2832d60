"""PII and secret detectors: what they find, what they must not find, and their cost."""

from __future__ import annotations

import time

import pytest

from hearth.safety.pii import find_pii, iban_valid, luhn_valid


def kinds(text: str) -> list[tuple[str, str]]:
    return [(f.kind, text[f.start : f.end]) for f in find_pii(text)]


@pytest.mark.parametrize(
    ("text", "kind", "found"),
    [
        ("write to bob.smith@example.co.uk today", "email", "bob.smith@example.co.uk"),
        ("call +44 20 7946 0958 now", "phone", "+44 20 7946 0958"),
        ("or (555) 123-4567", "phone", "(555) 123-4567"),
        ("card 4111 1111 1111 1111 ok", "card", "4111 1111 1111 1111"),
        ("card 5500-0000-0000-0004 ok", "card", "5500-0000-0000-0004"),
        ("iban GB82 WEST 1234 5698 7654 32.", "iban", "GB82 WEST 1234 5698 7654 32"),
        ("iban DE89370400440532013000 ok", "iban", "DE89370400440532013000"),
        ("ssn 123-45-6789 ok", "national_id", "123-45-6789"),
        ("ni AB 12 34 56 C ok", "national_id", "AB 12 34 56 C"),
        ("host 192.168.1.20 up", "ip", "192.168.1.20"),
        ("host 2001:db8::ff00:42:8329 up", "ip", "2001:db8::ff00:42:8329"),
        ("key sk-proj-abcdefghijklmnopqrstuvwx ok", "secret", "sk-proj-abcdefghijklmnopqrstuvwx"),
        ("aws AKIAIOSFODNN7EXAMPLE ok", "secret", "AKIAIOSFODNN7EXAMPLE"),
        ("gh ghp_" + "a1B2" * 9 + " ok", "secret", "ghp_" + "a1B2" * 9),
        ("token Zx8Qp2Lm9Rt4Vb7Nc1Kd6Hf3Jg5Ws0Ya ok", "secret", "Zx8Qp2Lm9Rt4Vb7Nc1Kd6Hf3Jg5Ws0Ya"),
    ],
)
def test_each_kind_is_found(text: str, kind: str, found: str) -> None:
    assert (kind, found) in kinds(text)


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112 fails Luhn",
        "iban GB82WEST12345698765433 fails mod 97",
        "iban GB00 WEST 1234 5698 7654 32 fails mod 97",
        "never issued: 000-12-3456 666-12-3456 900-12-3456 123-00-4567 123-45-0000",
        "invalid NI prefixes: GB 12 34 56 A, DA 12 34 56 A",
        "not addresses: 256.1.1.1 1.2.3 v1.2.3.4.5 12:30:45",
        "a hex digest 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "words_only_no_digits_here_at_all_really_long_identifier",
        "a date 2024-01-15 and a version 3.11.7 and 12345",
        "sk-short is not a key",
    ],
)
def test_look_alikes_are_not_found(text: str) -> None:
    found = [kind for kind, _ in kinds(text) if kind != "phone"]
    assert found == [], kinds(text)


def test_luhn_and_iban_checks() -> None:
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert not luhn_valid("4111")  # too short to be a card
    assert iban_valid("GB82 WEST 1234 5698 7654 32")
    assert not iban_valid("GB82 WEST 1234 5698 7654 33")
    assert not iban_valid("GB82")


@pytest.mark.parametrize(
    "unit",
    ["a", "1", "a@", "1 ", "1-", "+1", "a.", "ab:", "1.1.", "Aa1", "-", "@a."],
)
def test_scan_time_is_linear_on_adversarial_input(unit: str) -> None:
    """Repetitive text built to make backtracking detectors work hard: 8x the text must take
    about 8x the time (a quadratic scan would take 64x; 24x allows for a busy machine)."""
    small, large = best_time(unit * 2_500), best_time(unit * 20_000)
    assert large < max(small, 0.001) * 24, (unit, small, large)


def best_time(text: str) -> float:
    """The fastest of three scans (the least disturbed by other work on the machine)."""
    times = []
    for _ in range(3):
        started = time.perf_counter()
        find_pii(text)
        times.append(time.perf_counter() - started)
    return min(times)
