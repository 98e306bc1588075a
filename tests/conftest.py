from pipeline.env import set_defaults

set_defaults()  # no hub look-ups, no telemetry, no network

import pytest


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the whole session (start-up costs seconds); 2 CPUs like CI."""
    import ray

    from pipeline.runtime import init_ray

    init_ray(num_cpus=2)
    yield ray
    ray.shutdown()
