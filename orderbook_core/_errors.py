"""The exception of the wire validator (pure Python in both builds: see _wire)."""

from __future__ import annotations

from typing import Any, Final

__all__ = ["ValidationError"]


class ValidationError(ValueError):
    """Untrusted input broke a rule. ``str(err)`` is ``"<field>: <rule>"``.

    Attributes:
        field: the offending field's wire name (``"payload"`` for the whole value).
        rule: the rule it broke, in words.
        code: the stable error code, ``"ERR_VALIDATION"``.
    """

    code: Final = "ERR_VALIDATION"

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")
        self.field = field
        self.rule = rule

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.field, self.rule))
