"""Each exchange package's `__all__` names exactly the public names it re-exports."""

from types import GenericAlias, ModuleType
from typing import get_origin

import pytest

import exchange
import exchange.client
import exchange.client.view
import exchange.matcher
import exchange.protocol
import exchange.runtime
import exchange.sequencer
import exchange.tools
import exchange.versions

PACKAGES = [
    exchange,
    exchange.client,
    exchange.client.view,
    exchange.matcher,
    exchange.protocol,
    exchange.runtime,
    exchange.sequencer,
    exchange.tools,
    exchange.versions,
]


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_all_lists_every_public_name(package: ModuleType) -> None:
    public = {
        name
        for name, value in vars(package).items()
        if not name.startswith("_")
        and not isinstance(value, ModuleType)
        and (
            getattr(value, "__module__", "exchange").startswith("exchange")
            or isinstance(value, GenericAlias)  # a type alias, e.g. Record = dict[str, Any]
            or get_origin(value) is not None
        )
    }
    assert set(package.__all__) == public
    assert len(set(package.__all__)) == len(package.__all__)


def test_every_exported_error_is_an_exchange_error() -> None:
    errors = [
        value
        for name in exchange.protocol.__all__
        if isinstance(value := getattr(exchange.protocol, name), type)
        and issubclass(value, Exception)
    ]
    assert len(errors) >= 9
    assert all(issubclass(error, exchange.ExchangeError) for error in errors)
