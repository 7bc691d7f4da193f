"""Realtime pricing: the per-hour price of a mode, and per-second proration to the cent."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

from session_api.config import Settings

Mode = Literal["conversation", "passthrough"]


def price_cents(settings: Settings, mode: Mode) -> int:
    per_hour = (
        settings.realtime_price_conversation
        if mode == "conversation"
        else settings.realtime_price_passthrough
    )
    return int((per_hour * 100).to_integral_value(ROUND_HALF_UP))


def dollars(cents: Decimal) -> str:
    value = (cents / 100).quantize(Decimal("0.01"), ROUND_HALF_UP)
    return f"${value}"


def estimated_cost(duration_s: float, cents_per_hour: int) -> str:
    """Per-second proration, rounded half up to the cent: 322.0 s at $10/h -> "$0.89"."""
    cents = Decimal(str(duration_s)) * cents_per_hour / 3600
    return dollars(cents)


def pricing_text(cents_per_hour: int) -> str:
    """'$10/hour, prorated per second' (or '$7.50/hour, ...' for a price with cents)."""
    whole, rest = divmod(cents_per_hour, 100)
    price = f"${whole}" if rest == 0 else f"${whole}.{rest:02d}"
    return f"{price}/hour, prorated per second"


def round_duration(seconds: float) -> float:
    return round(max(0.0, seconds), 1)
