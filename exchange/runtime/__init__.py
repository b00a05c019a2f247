"""The workers' shared runtime: what every long-running program of the exchange needs.

Below the roles (sequencer, matcher, client, tools), above `exchange.protocol`:
- what every command line shares: exit codes, default grape URLs, JSON output;
- how a worker runs as a command line (`run_worker_program`: flags, signals, logging);
- one worker per database (`one_writer`, an flock held for the worker's life);
- what is retried is logged once when it fails, once when it works (`Outage`);
- the test hook that kills a worker at a named point (`crash_point`, ``DEX_CRASH_AT``);
- key files (an Ed25519 key made on first use, kept 0600; the matcher key pinned
  per exchange instance);
- the metrics observer the workers call (`Metrics`, no-op by default) and its
  Prometheus exporter (`serve_prometheus`, the ``metrics`` extra);
- one NATS connection on a thread of its own, for the JetStream journal and the matcher's
  lease (`exchange.runtime.nats_client`, the ``jetstream`` extra: imported explicitly,
  never from here, so nats-py is loaded only when asked).

```python
from exchange.runtime import NullMetrics

class Commits(NullMetrics):            # override only what you need
    def committed(self, head: int, count: int, seconds: float) -> None:
        print(f"journal at {head}: {count} commands in {seconds * 1000:.1f} ms")
```
"""

from exchange.runtime._cli import (
    DEFAULT_GRAPE,
    DEFAULT_MATCHER_GRAPE,
    EXIT_BROKEN_PIPE,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NOT_CONFIRMED,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_UNREACHABLE,
    EXIT_UNTRUSTED,
    EXIT_USAGE,
    check_grape_url,
    check_grape_urls,
    grape_url,
    grape_urls,
    is_tcp_port,
    join_grape_urls,
    positive,
    print_json,
    tcp_port,
)
from exchange.runtime._crashpoints import ENV_VAR as CRASH_ENV_VAR
from exchange.runtime._crashpoints import crash_point, parse_crash_plan
from exchange.runtime._exporter import serve_prometheus
from exchange.runtime._keys import (
    KEY_DIR_ENV,
    KNOWN_MATCHERS,
    KeyFileError,
    client_key_path,
    default_key_dir,
    load_or_create_key,
    pin_matcher_key,
    pinned_matcher_path,
    public_key_path,
    read_public_key,
    read_trusted_key,
)
from exchange.runtime._lockfile import lock_path, one_writer
from exchange.runtime._metrics import (
    METRICS_EXTRA,
    NO_METRICS,
    Metrics,
    NullMetrics,
    Role,
    TimedPuts,
    observe_refusals,
)
from exchange.runtime._outage import Outage
from exchange.runtime._program import Runner, WorkerProgram, market_path, run_worker_program

__all__ = [
    "CRASH_ENV_VAR",
    "DEFAULT_GRAPE",
    "DEFAULT_MATCHER_GRAPE",
    "EXIT_BROKEN_PIPE",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_CONFIRMED",
    "EXIT_OK",
    "EXIT_REJECTED",
    "EXIT_UNREACHABLE",
    "EXIT_UNTRUSTED",
    "EXIT_USAGE",
    "KEY_DIR_ENV",
    "KNOWN_MATCHERS",
    "METRICS_EXTRA",
    "NO_METRICS",
    "KeyFileError",
    "Metrics",
    "NullMetrics",
    "Outage",
    "Role",
    "Runner",
    "TimedPuts",
    "WorkerProgram",
    "check_grape_url",
    "check_grape_urls",
    "client_key_path",
    "crash_point",
    "default_key_dir",
    "grape_url",
    "grape_urls",
    "is_tcp_port",
    "join_grape_urls",
    "load_or_create_key",
    "lock_path",
    "market_path",
    "observe_refusals",
    "one_writer",
    "parse_crash_plan",
    "pin_matcher_key",
    "pinned_matcher_path",
    "positive",
    "print_json",
    "public_key_path",
    "read_public_key",
    "read_trusted_key",
    "run_worker_program",
    "serve_prometheus",
    "tcp_port",
]
