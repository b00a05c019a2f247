"""`exchange.__all__` names exactly the public names its `__init__` re-exports."""

import exchange


def test_all_lists_every_public_name() -> None:
    public = {
        name
        for name, value in vars(exchange).items()
        if not name.startswith("_") and getattr(value, "__module__", "").startswith("exchange")
    }
    assert set(exchange.__all__) == public
    assert exchange.__all__ == sorted(exchange.__all__)


def test_every_exported_error_is_an_exchange_error() -> None:
    assert issubclass(exchange.InvalidVersion, exchange.ExchangeError)
    assert issubclass(exchange.ReplayError, exchange.ExchangeError)
