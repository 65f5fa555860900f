"""Reading the seed's one global issue list, which every coupon (and anything
else that writes to it) shares: foreign or malformed items are skipped, never
fatal to the reader."""

import json
from collections.abc import Iterable
from typing import Any

_FIELDS = ("request", "user", "coupon", "issued_ms")


def parse_seed_items(raw_items: Iterable[str]) -> list[dict[str, Any]]:
    """The well-formed issue entries among raw list items, parsed."""
    entries = []
    for raw in raw_items:
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if isinstance(entry, dict) and all(field in entry for field in _FIELDS):
            entries.append(entry)
    return entries


def seed_entries(raw_items: Iterable[str], coupon_id: str) -> list[dict[str, Any]]:
    """The entries of ``coupon_id`` among raw list items, parsed."""
    return [entry for entry in parse_seed_items(raw_items) if entry["coupon"] == coupon_id]
