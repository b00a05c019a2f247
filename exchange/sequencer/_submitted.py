"""What the sequencer makes of a verified ``submit_order`` payload: the command, checked,
and the key that says whether it was journaled already.

A new order or a cancel is named by its ``orderId``, a modify by its ``requestId``: the
signature covers both, so a payload re-sent later is a repeat (the first reply, nothing
stored), never a second command (docs/protocol.md "Replays").
"""

from __future__ import annotations

from exchange.protocol import (
    ERR_VALIDATION,
    AuthFailed,
    Entry,
    Refused,
    request_id_problem,
    reserved_order_id,
    take_request_id,
)
from orderbook_core import (
    Command,
    MarketSpec,
    ModifyOrder,
    NewOrder,
    command_to_wire,
    parse_command,
)
from transports import JSON

__all__ = ["DedupeKey", "check_repeat", "is_modify", "submitted_command"]

DedupeKey = tuple[str, str, str]
"""(clientId, op, orderId) of a command that may not be journaled twice; for a modify,
(clientId, "modify", requestId)."""

_STAND_IN_ORDER_ID = "unnamed"
"""Validates a new order sent without its orderId, so that its other fields are checked
in the validator's order; such an order is then refused (ERR_AUTH), never journaled."""


def submitted_command(payload: JSON, spec: MarketSpec) -> tuple[Command, DedupeKey]:
    """Validate a verified payload once (seq and ts 0: the sequencer numbers it later).

    Returns:
        The command and its dedupe key.

    Raises:
        orderbook_core.ValidationError: the payload breaks a rule, or a bad requestId.
        Refused: ERR_VALIDATION, a new order's id in the reserved namespace, or a
            requestId on a new order or a cancel.
        AuthFailed: a new order without its orderId, a modify without its requestId.
    """
    payload, request_id = take_request_id(payload)
    command = parse_command(payload, spec, seq=0, ts=0, default_order_id=_STAND_IN_ORDER_ID)
    problem = reserved_order_id(command) or request_id_problem(command, request_id)
    if problem is not None:
        raise Refused(ERR_VALIDATION, problem)
    if isinstance(command, ModifyOrder):
        if request_id is None:
            raise AuthFailed(
                "requestId: required in a signed modify (else a replay is applied again)"
            )
        return command, (command.client_id, "modify", request_id)
    if isinstance(command, NewOrder):
        if not (isinstance(payload, dict) and "orderId" in payload):
            raise AuthFailed("orderId: required in a signed order (else a replay is a new order)")
        return command, (command.client_id, "new", command.order_id)
    return command, (command.client_id, "cancel", command.order_id)


def check_repeat(command: Command, first: Entry, spec: MarketSpec) -> None:
    """A modify's repeat must be that very modify: its requestId names one request.

    Raises:
        Refused: ERR_VALIDATION, the requestId was used by another modify (nothing
            stored; the first one stands).
    """
    if isinstance(command, ModifyOrder) and command_to_wire(command, spec) != first.wire:
        raise Refused(
            ERR_VALIDATION,
            f"requestId: already used by another modify (seq {first.seq});"
            " a new modify needs a new requestId",
        )


def is_modify(entry: Entry) -> bool:
    """Whether `entry` is a modify (its key's third part is then its requestId)."""
    return isinstance(entry.command, ModifyOrder)
