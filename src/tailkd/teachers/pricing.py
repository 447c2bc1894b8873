"""USD per one million tokens, by model. ``teacher.price`` in the config overrides the table.

Two figures per answer:
- the *list cost* (:meth:`Price.cost`): input and output tokens at the live list price. Budgets are
  capped in it and runs compare on it (``teacher_cost_usd``): it does not depend on how an answer was
  bought, and it bounds what was charged from above;
- the *charge* (:meth:`Price.charged`): what the provider bills: cached prompt tokens at the
  cached-input price, and everything at the batch price for the Batch API (``teacher_paid_usd``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tailkd.errors import ConfigError

log = logging.getLogger(__name__)

# when the table below was copied from the providers' pages; check them before a grant report
PRICES_AS_OF = "2025-06"


@dataclass(frozen=True)
class Price:
    input_per_1m: float = 0.0
    output_per_1m: float = 0.0
    cached_input_per_1m: float | None = None  # None: cached prompt tokens cost the full input price
    batch_discount: float = 0.5  # the Batch API bills this share of the live price

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """The list cost: every token at the live price."""
        return (input_tokens * self.input_per_1m + output_tokens * self.output_per_1m) / 1e6

    def charged(self, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0, batch: bool = False) -> float:
        """What the provider bills for an answer."""
        cached = min(max(int(cached_input_tokens), 0), input_tokens)
        cached_rate = self.input_per_1m if self.cached_input_per_1m is None else self.cached_input_per_1m
        usd = ((input_tokens - cached) * self.input_per_1m + cached * cached_rate
               + output_tokens * self.output_per_1m) / 1e6
        return usd * (self.batch_discount if batch else 1.0)


# List prices in USD per 1M tokens (input, output, cached input), as published by the providers on
# PRICES_AS_OF; the Batch API bills half of each. Override with teacher.price.
PRICE_TABLE: dict[str, Price] = {
    "gpt-4o": Price(2.50, 10.00, 1.25),
    "gpt-4o-mini": Price(0.15, 0.60, 0.075),
    "gpt-4.1": Price(2.00, 8.00, 0.50),
    "gpt-4.1-mini": Price(0.40, 1.60, 0.10),
    "gpt-4.1-nano": Price(0.10, 0.40, 0.025),
    "gpt-4-turbo": Price(10.00, 30.00),
    "gpt-4": Price(30.00, 60.00),
    "gpt-3.5-turbo": Price(0.50, 1.50),
    "o3-mini": Price(1.10, 4.40, 0.55),
    "o4-mini": Price(1.10, 4.40, 0.275),
    "o3": Price(2.00, 8.00, 0.50),
}


def resolve_price(model: str, override: Mapping[str, Any] | None) -> Price:
    """The config's price if given, else the table's; an unknown model costs nothing, and a warning."""
    if override:
        cached = override.get("cached_input_per_1m")
        price = Price(float(override.get("input_per_1m", 0.0)), float(override.get("output_per_1m", 0.0)),
                      None if cached is None else float(cached), float(override.get("batch_discount", 0.5)))
        if min(price.input_per_1m, price.output_per_1m, price.cached_input_per_1m or 0.0) < 0 or \
                not 0 < price.batch_discount <= 1:
            raise ConfigError(f"teacher.price must not be negative, and batch_discount must be in (0, 1] "
                              f"(got {dict(override)})")
        return price
    if model in PRICE_TABLE:
        return PRICE_TABLE[model]
    log.warning("no price known for teacher model %r: costs count as 0; set teacher.price.input_per_1m "
                "and teacher.price.output_per_1m", model)
    return Price()
