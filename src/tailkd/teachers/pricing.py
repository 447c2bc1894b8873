"""USD per one million tokens, by model. ``teacher.price`` in the config overrides the table."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tailkd.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Price:
    input_per_1m: float = 0.0
    output_per_1m: float = 0.0

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_1m + output_tokens * self.output_per_1m) / 1e6


# List prices in USD per 1M tokens (input, output), as published by the providers; check before you
# rely on them for a grant report, and override with teacher.price.
PRICE_TABLE: dict[str, Price] = {
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4.1": Price(2.00, 8.00),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1-nano": Price(0.10, 0.40),
    "gpt-4-turbo": Price(10.00, 30.00),
    "gpt-4": Price(30.00, 60.00),
    "gpt-3.5-turbo": Price(0.50, 1.50),
    "o3-mini": Price(1.10, 4.40),
}


def resolve_price(model: str, override: Mapping[str, Any] | None) -> Price:
    """The config's price if given, else the table's; an unknown model costs nothing, and a warning."""
    if override:
        price = Price(float(override.get("input_per_1m", 0.0)), float(override.get("output_per_1m", 0.0)))
        if price.input_per_1m < 0 or price.output_per_1m < 0:
            raise ConfigError(f"teacher.price must not be negative (got {dict(override)})")
        return price
    if model in PRICE_TABLE:
        return PRICE_TABLE[model]
    log.warning("no price known for teacher model %r: costs count as 0; set teacher.price.input_per_1m "
                "and teacher.price.output_per_1m", model)
    return Price()
