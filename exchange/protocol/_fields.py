"""The field checks every message of the protocol goes through, written once.

Each raises `BadMessage` naming the field and the rule (a service answers it with
``ERR_BAD_REQUEST``).
"""

from __future__ import annotations

from typing import Any, Final

from exchange.protocol._errors import BadMessage
from transports import JSON

__all__ = ["MAX_SEQ", "wire_count", "wire_object"]

MAX_SEQ: Final = 2**53 - 1
"""The largest sequence number or timestamp taken: every JSON peer (JavaScript too)
holds it exactly."""


def wire_object(payload: JSON, what: str, fields: frozenset[str]) -> dict[str, Any]:
    """`payload` as an object with no field outside `fields`."""
    if not isinstance(payload, dict):
        raise BadMessage(f"{what}: must be an object {{{', '.join(sorted(fields))}}}")
    extra = sorted(set(payload) - fields)
    if extra:
        raise BadMessage(f"{extra[0]}: unknown field")
    return payload


def wire_count(value: object, field: str, low: int = 0) -> int:
    """`value` as an integer from `low` to `MAX_SEQ` (a bool is not one)."""
    if type(value) is not int or not low <= value <= MAX_SEQ:
        raise BadMessage(f"{field}: must be an integer from {low} to {MAX_SEQ}")
    return value
