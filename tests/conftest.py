import os

# No hub look-ups (each waits ~23 s to fail offline), no telemetry, no network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# A loaded 2-core machine can take over a minute to start the temporary server.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "300")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the whole session (start-up costs seconds); 2 CPUs like CI."""
    import ray

    from pipeline.runtime import init_ray

    init_ray(num_cpus=2)
    yield ray
    ray.shutdown()
