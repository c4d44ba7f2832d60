"""hearth.toml's ``[safety]`` table: profiles for every request, per model and per key, merged
into one compiled :class:`Policy` per (key, model).

```toml
[safety]
hold_back = 64                # bound on what a stream holds back (default 64)
regex_timeout_ms = 50         # time limit of one rule on one scan (default 50)

[safety.default]              # every request
pii = "redact"                # "redact" | "block" | "log" | "off", or per kind: {email = "block"}
blocklist = ["forbidden phrase"]
blocklist_action = "block"    # "block" | "redact" | "log"
patterns = { codename = 'PROJECT-[A-Z]{4}' }
pattern_action = "block"
directions = ["input", "output"]
classifier = "llama-guard3:1b"        # a model in the store, served by Hearth itself
classifier_format = "llama-guard"     # or "shieldgemma"
classifier_action = "block"           # or "log"

[safety.models."gemma3:270m"] # requests for this model
[safety.keys."app-1"]         # requests made with this key
```

Merging, default → model → key: a later table's scalars replace earlier ones, ``pii`` kinds
merge kind by kind, blocklists add up, and patterns add up by name (a later pattern of the
same name replaces the earlier one). Every pattern is compiled (and vetted) when the file is
loaded, so a bad one stops ``hearth serve`` with one line that says where.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal, cast

import regex

from hearth.errors import ConfigError
from hearth.safety.pii import PII_KINDS
from hearth.safety.rules import DEFAULT_TIMEOUT_S, Rule, blocklist_pattern, compile_pattern

Action = Literal["redact", "block", "log"]
ACTIONS: tuple[str, ...] = ("redact", "block", "log")
DIRECTIONS = ("input", "output")
CLASSIFIER_FORMATS = ("llama-guard", "shieldgemma")
DEFAULT_HOLD_BACK = 64
_PROFILE_KEYS = frozenset(
    {
        "pii",
        "blocklist",
        "blocklist_action",
        "patterns",
        "pattern_action",
        "directions",
        "classifier",
        "classifier_format",
        "classifier_action",
    }
)


@dataclass(frozen=True)
class Profile:
    """One table's settings, validated; None means "not set here" (an earlier table decides)."""

    pii: Mapping[str, str] = field(default_factory=dict)  # kind → action or "off"
    blocklist: tuple[str, ...] = ()
    blocklist_action: Action | None = None
    patterns: Mapping[str, str] = field(default_factory=dict)  # name → source
    pattern_action: Action | None = None
    directions: frozenset[str] | None = None
    classifier: str | None = None
    classifier_format: str | None = None
    classifier_action: Action | None = None

    def then(self, later: Profile) -> Profile:
        """This profile with ``later``'s settings on top."""
        return Profile(
            pii={**self.pii, **later.pii},
            blocklist=self.blocklist + tuple(w for w in later.blocklist if w not in self.blocklist),
            blocklist_action=later.blocklist_action or self.blocklist_action,
            patterns={**self.patterns, **later.patterns},
            pattern_action=later.pattern_action or self.pattern_action,
            directions=later.directions if later.directions is not None else self.directions,
            classifier=later.classifier or self.classifier,
            classifier_format=later.classifier_format or self.classifier_format,
            classifier_action=later.classifier_action or self.classifier_action,
        )


@dataclass(frozen=True)
class Classifier:
    model: str
    format: str = "llama-guard"
    action: Action = "block"


@dataclass(frozen=True)
class NamedRule:
    """A compiled rule with what to do when it fires and its audit category."""

    rule: Rule
    category: str  # "blocklist" or "pattern"
    action: Action


@dataclass(frozen=True)
class Policy:
    """What to check for one (key, model): compiled, ready to scan."""

    pii: Mapping[str, Action] = field(default_factory=dict)  # kinds that are on
    rules: tuple[NamedRule, ...] = ()
    directions: frozenset[str] = frozenset(DIRECTIONS)
    classifier: Classifier | None = None
    hold_back: int = DEFAULT_HOLD_BACK

    def active(self, direction: str) -> bool:
        return direction in self.directions and bool(self.pii or self.rules or self.classifier)


OFF = Policy(directions=frozenset())


@dataclass(frozen=True)
class SafetyConfig:
    default: Profile = field(default_factory=Profile)
    models: Mapping[str, Profile] = field(default_factory=dict)
    keys: Mapping[str, Profile] = field(default_factory=dict)
    hold_back: int = DEFAULT_HOLD_BACK
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def enabled(self) -> bool:
        return self.default != Profile() or bool(self.models) or bool(self.keys)

    @classmethod
    def from_table(cls, table: Mapping[str, object], where: str = "hearth.toml") -> SafetyConfig:
        """Validate ``[safety]``; ConfigError (one line, naming the table and field) if bad."""
        known = {"hold_back", "regex_timeout_ms", "default", "models", "keys"}
        _no_unknown(table, known, f"{where} [safety]")
        hold_back = _int(table.get("hold_back", DEFAULT_HOLD_BACK), f"{where} [safety] hold_back")
        timeout_ms = _int(table.get("regex_timeout_ms", 50), f"{where} [safety] regex_timeout_ms")
        config = cls(hold_back=hold_back, timeout_s=timeout_ms / 1000)
        default = _profile(table.get("default", {}), f"{where} [safety.default]")
        models = _profiles(table.get("models", {}), f"{where} [safety.models", model_key)
        keys = _profiles(table.get("keys", {}), f"{where} [safety.keys", str)
        config = replace(config, default=default, models=models, keys=keys)
        for name, profile in [("default", default), *models.items(), *keys.items()]:
            _compile(profile, config, f"{where} [safety] {name!r}")  # vet every pattern now
        return config

    def policy(self, key: str | None, model: str) -> Policy:
        """The merged, compiled policy for requests by ``key`` for ``model``."""
        profile = self.default.then(self.models.get(model_key(model), Profile()))
        if key is not None:
            profile = profile.then(self.keys.get(key, Profile()))
        return _compile(profile, self, "hearth.toml [safety]")


def model_key(name: str) -> str:
    """``name`` with its tag (``tiny`` and ``tiny:latest`` are one model)."""
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last else f"{name}:latest"


def _compile(profile: Profile, config: SafetyConfig, where: str) -> Policy:
    rules: list[NamedRule] = []
    if profile.blocklist:
        pattern = blocklist_pattern(profile.blocklist, f"{where} blocklist")
        action = profile.blocklist_action or "block"
        rules.append(NamedRule(Rule("blocklist", pattern, config.timeout_s), "blocklist", action))
    for name, source in profile.patterns.items():
        compiled: regex.Pattern[str] = compile_pattern(source, f"{where} patterns.{name}")
        action = profile.pattern_action or "block"
        rule = Rule(f"pattern.{name}", compiled, config.timeout_s)
        rules.append(NamedRule(rule, "pattern", action))
    classifier = None
    if profile.classifier:
        classifier = Classifier(
            profile.classifier,
            profile.classifier_format or "llama-guard",
            profile.classifier_action or "block",
        )
    pii = {kind: cast(Action, mode) for kind, mode in profile.pii.items() if mode != "off"}
    directions = profile.directions if profile.directions is not None else frozenset(DIRECTIONS)
    return Policy(pii, tuple(rules), directions, classifier, config.hold_back)


def _profiles(raw: object, where: str, normalise: Callable[[str], str]) -> dict[str, Profile]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}] must be a table of tables")
    return {
        normalise(str(name)): _profile(table, f'{where}."{name}"]') for name, table in raw.items()
    }


def _profile(raw: object, where: str) -> Profile:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a table")
    _no_unknown(raw, _PROFILE_KEYS, where)
    return Profile(
        pii=_pii(raw.get("pii"), f"{where} pii"),
        blocklist=tuple(_strings(raw.get("blocklist", []), f"{where} blocklist")),
        blocklist_action=_action(raw.get("blocklist_action"), f"{where} blocklist_action"),
        patterns=_patterns(raw.get("patterns", {}), f"{where} patterns"),
        pattern_action=_action(raw.get("pattern_action"), f"{where} pattern_action"),
        directions=_directions(raw.get("directions"), f"{where} directions"),
        classifier=_optional_str(raw.get("classifier"), f"{where} classifier"),
        classifier_format=_choice(
            raw.get("classifier_format"), CLASSIFIER_FORMATS, f"{where} classifier_format"
        ),
        classifier_action=_action(raw.get("classifier_action"), f"{where} classifier_action"),
    )


def _pii(raw: object, where: str) -> dict[str, str]:
    if raw is None:
        return {}
    modes = (*ACTIONS, "off")
    if isinstance(raw, str):
        return {kind: _choice(raw, modes, where) or "off" for kind in PII_KINDS}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: must be one of {', '.join(modes)} or a table of kinds")
    for kind in raw:
        if kind not in PII_KINDS:
            raise ConfigError(f"{where}: unknown kind {kind!r} (kinds: {', '.join(PII_KINDS)})")
    return {kind: _choice(mode, modes, f"{where}.{kind}") or "off" for kind, mode in raw.items()}


def _patterns(raw: object, where: str) -> dict[str, str]:
    if not isinstance(raw, Mapping) or not all(isinstance(v, str) for v in raw.values()):
        raise ConfigError(f"{where}: must be a table of name = 'regular expression'")
    return {str(name): str(source) for name, source in raw.items()}


def _strings(raw: object, where: str) -> list[str]:
    if not isinstance(raw, list) or not all(isinstance(v, str) and v.strip() for v in raw):
        raise ConfigError(f"{where}: must be a list of non-empty strings")
    return list(raw)


def _directions(raw: object, where: str) -> frozenset[str] | None:
    if raw is None:
        return None
    values = _strings(raw, where)
    for value in values:
        _choice(value, DIRECTIONS, where)
    return frozenset(values)


def _action(raw: object, where: str) -> Action | None:
    return cast(Action | None, _choice(raw, ACTIONS, where))


def _choice(raw: object, choices: tuple[str, ...], where: str) -> str | None:
    if raw is None:
        return None
    if raw not in choices:
        raise ConfigError(f"{where}: {raw!r} is not one of {', '.join(choices)}")
    return str(raw)


def _optional_str(raw: object, where: str) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw:
        raise ConfigError(f"{where}: must be a model name")
    return raw


def _int(raw: object, where: str) -> int:
    if not isinstance(raw, int) or isinstance(raw, bool) or not 1 <= raw <= 100_000:
        raise ConfigError(f"{where}: must be a whole number from 1 to 100000, not {raw!r}")
    return raw


def _no_unknown(table: Mapping[str, object], known: frozenset[str] | set[str], where: str) -> None:
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ConfigError(
            f"{where}: unknown setting {unknown[0]!r} (known: {', '.join(sorted(known))})"
        )
