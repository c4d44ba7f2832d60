"""Cost accounting: what a token costs on this machine, measured, against hosted API prices.

A model's *busy time* is the union of its requests' intervals (from each usage record's end and
duration), so concurrent requests that share a batch share the time: at concurrency 16 the
machine is busy once, not 16 times. A model's cost per token is the machine's hourly cost
(hearth.toml ``[hardware]``) times its busy hours, divided by the tokens (prompt and completion)
it processed in that time. Keys and teams are charged their tokens at their models' rates.
Idle time is not charged to anyone: these figures are the cost of the work, and the machine's
idle hours show as the gap between them and its bill.

The hosted prices (``hearth/data/api_prices.toml``) are data with the date they were read; they
are compared per 1M tokens at the same mix of prompt and completion tokens as measured here.
"""

from __future__ import annotations

import tomllib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Literal

from sqlalchemy import Engine, func, select

from hearth.config import Hardware
from hearth.db import Sessions
from hearth.errors import ConfigError, ValidationError
from hearth.server.keys import KeyStore
from hearth.server.usage import UsageRecordRow

CostGroup = Literal["model", "key", "team"]
MILLION = 1_000_000


@dataclass(frozen=True)
class HostedPrice:
    vendor: str
    name: str
    input: float  # per 1M prompt tokens
    output: float  # per 1M completion tokens

    def blended(self, input_share: float) -> float:
        """Per 1M tokens when ``input_share`` of them are prompt tokens."""
        return self.input * input_share + self.output * (1 - input_share)


@dataclass(frozen=True)
class PriceList:
    read: date  # when the prices were read: they go stale
    currency: str
    source: str
    models: tuple[HostedPrice, ...]


@dataclass(frozen=True)
class Use:
    """One usage record, as cost accounting needs it."""

    model: str
    key: str | None
    end: datetime
    seconds: float
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class CostRow:
    group: str | None  # a model, key or team name; None: no key / no team
    requests: int
    prompt_tokens: int
    completion_tokens: int
    busy_seconds: float | None  # per model only
    cost: float | None  # None without a [hardware] profile

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def per_million(self) -> float | None:
        if self.cost is None or self.tokens == 0:
            return None
        return self.cost / self.tokens * MILLION

    @property
    def tokens_per_second(self) -> float | None:
        if not self.busy_seconds:
            return None
        return self.tokens / self.busy_seconds


@dataclass(frozen=True)
class CostReport:
    group_by: CostGroup
    since: datetime | None
    hardware: Hardware | None
    rows: tuple[CostRow, ...]
    prices: PriceList

    @property
    def total(self) -> CostRow:
        costs = [row.cost for row in self.rows]
        return CostRow(
            group="total",
            requests=sum(row.requests for row in self.rows),
            prompt_tokens=sum(row.prompt_tokens for row in self.rows),
            completion_tokens=sum(row.completion_tokens for row in self.rows),
            busy_seconds=None,
            cost=None if self.hardware is None else sum(c or 0.0 for c in costs),
        )

    @property
    def input_share(self) -> float:
        """Share of prompt tokens in all tokens (0.5 when there are none)."""
        total = self.total
        return total.prompt_tokens / total.tokens if total.tokens else 0.5


def load_prices(path: Path | None = None) -> PriceList:
    """The hosted price list shipped with Hearth (or ``path``)."""
    if path is None:
        text = resources.files("hearth").joinpath("data/api_prices.toml").read_text()
        where = "hearth/data/api_prices.toml"
    else:
        text, where = path.read_text(), str(path)
    try:
        data = tomllib.loads(text)
        models = tuple(
            HostedPrice(str(m["vendor"]), str(m["name"]), float(m["input"]), float(m["output"]))
            for m in data.get("model", [])
        )
        read = data["read"]
        if not isinstance(read, date):
            raise TypeError("'read' must be a date")
        return PriceList(read, str(data["currency"]), str(data.get("source", "")), models)
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as error:
        raise ConfigError(f"{where}: not a valid price list ({error})") from None


def read_uses(engine: Engine, since: datetime | None = None) -> list[Use]:
    """Usage records since ``since`` (every one when None), oldest first."""
    table = UsageRecordRow
    query = select(
        table.model,
        table.key_name,
        table.created,
        table.duration_ms,
        table.prompt_tokens,
        table.completion_tokens,
    ).order_by(table.created)
    if since is not None:
        query = query.where(table.created >= since)
    with Sessions(engine, table.__table__).begin() as session:  # type: ignore[arg-type]
        return [
            Use(model, key, end, (ms or 0.0) / 1000, int(prompt), int(completion))
            for model, key, end, ms, prompt, completion in session.execute(query)
        ]


def busy_seconds(uses: Iterable[Use]) -> float:
    """Length of the union of the uses' intervals: overlapping requests count once."""
    intervals = sorted((u.end - timedelta(seconds=u.seconds), u.end) for u in uses)
    total, current_start, current_end = 0.0, None, None
    for start, end in intervals:
        if current_end is None or start > current_end:
            if current_start is not None and current_end is not None:
                total += (current_end - current_start).total_seconds()
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    if current_start is not None and current_end is not None:
        total += (current_end - current_start).total_seconds()
    return total


def model_rates(uses: Sequence[Use], hardware: Hardware | None) -> dict[str, float]:
    """Money per token for each model with measured work (empty without hardware)."""
    if hardware is None:
        return {}
    rates = {}
    for model, mine in _by_model(uses).items():
        tokens = sum(u.prompt_tokens + u.completion_tokens for u in mine)
        if tokens:
            rates[model] = hardware.cost_per_hour * busy_seconds(mine) / 3600 / tokens
    return rates


def cost_report(
    engine: Engine,
    hardware: Hardware | None,
    *,
    group_by: CostGroup = "model",
    since: datetime | None = None,
    prices: PriceList | None = None,
) -> CostReport:
    """Requests, tokens and cost per model, key or team since ``since``, most costly first.
    Rates come from the same records, so a model's cost is its own busy time."""
    if group_by not in ("model", "key", "team"):
        raise ValidationError("by", group_by, "must be 'model', 'key' or 'team'")
    uses = read_uses(engine, since)
    rates = model_rates(uses, hardware)
    teams = key_teams(engine) if group_by == "team" else {}
    groups: dict[str | None, list[Use]] = defaultdict(list)
    for use in uses:
        group = use.model if group_by == "model" else use.key
        groups[teams.get(group) if group_by == "team" and group else group].append(use)
    rows = [_row(group, mine, rates, hardware, group_by) for group, mine in groups.items()]
    rows.sort(key=lambda row: (-(row.cost or 0.0), -row.tokens, row.group or ""))
    return CostReport(group_by, since, hardware, tuple(rows), prices or load_prices())


def key_teams(engine: Engine) -> dict[str, str | None]:
    """Each key's team."""
    return {info.name: info.team for info in KeyStore(engine).list()}


def spent(
    engine: Engine, keys: Sequence[str], since: datetime, rates: Mapping[str, float]
) -> tuple[int, float]:
    """Tokens and cost of ``keys`` since ``since`` (for loading a quota's month)."""
    if not keys:
        return 0, 0.0
    table = UsageRecordRow
    query = (
        select(table.model, func.sum(table.prompt_tokens + table.completion_tokens))
        .where(table.key_name.in_(list(keys)), table.created >= since)
        .group_by(table.model)
    )
    with Sessions(engine, table.__table__).begin() as session:  # type: ignore[arg-type]
        per_model = [(model, int(tokens or 0)) for model, tokens in session.execute(query)]
    fallback = max(rates.values(), default=0.0)
    tokens = sum(count for _, count in per_model)
    cost = sum(count * rates.get(model, fallback) for model, count in per_model)
    return tokens, cost


def _by_model(uses: Iterable[Use]) -> dict[str, list[Use]]:
    grouped: dict[str, list[Use]] = defaultdict(list)
    for use in uses:
        grouped[use.model].append(use)
    return grouped


def _row(
    group: str | None,
    uses: list[Use],
    rates: Mapping[str, float],
    hardware: Hardware | None,
    group_by: CostGroup,
) -> CostRow:
    cost = None
    if hardware is not None:
        cost = sum((u.prompt_tokens + u.completion_tokens) * rates.get(u.model, 0.0) for u in uses)
    return CostRow(
        group=group,
        requests=len(uses),
        prompt_tokens=sum(u.prompt_tokens for u in uses),
        completion_tokens=sum(u.completion_tokens for u in uses),
        busy_seconds=busy_seconds(uses) if group_by == "model" else None,
        cost=cost,
    )
