"""nats-py is loaded only when asked: `exchange.runtime.nats_client` is imported by the
JetStream journal and the matcher's KV lease, never by the packages themselves."""

import subprocess
import sys


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_the_packages_do_not_import_nats() -> None:
    out = run_python(
        "import sys\n"
        "sys.modules['nats'] = None\n"  # `import nats` would raise ImportError
        "import exchange, exchange.runtime, exchange.sequencer, exchange.matcher\n"
        "import exchange.tools\n"
        "assert 'exchange.runtime.nats_client' not in sys.modules\n"
    )
    assert out.returncode == 0, out.stderr


def test_the_journal_and_the_lease_share_the_client_module() -> None:
    out = run_python(
        "import sys\n"
        "import exchange.sequencer._jetstream, exchange.matcher._kv_lease\n"
        "assert 'nats' in sys.modules\n"
        "from exchange.runtime.nats_client import NatsClient, describe_error, stream_name\n"
        "assert stream_name('BTC/USD') == 'DEX_BTC_USD'\n"
    )
    assert out.returncode == 0, out.stderr
