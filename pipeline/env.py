"""The process environment every entry point sets before importing Prefect, Ray or transformers.

One place for it: the CLI, the flows, the runtime and the tests call ``set_defaults()``; a value
the user set already wins.
"""
from __future__ import annotations

import os

DEFAULTS = {
    # No hub look-ups (each waits ~23 s to fail offline) and no telemetry: nothing leaves the machine.
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "RAY_USAGE_STATS_ENABLED": "0",
    # A loaded 2-core machine can take over a minute to start Prefect's temporary server.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300",
    "TOKENIZERS_PARALLELISM": "false",
}


def set_defaults() -> None:
    """Set every default the environment does not already have."""
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)


set_defaults()
