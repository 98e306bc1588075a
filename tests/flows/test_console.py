"""What `cirforge generate` prints: phase lines and the summary; Ray's and Prefect's chatter only with --verbose."""
import subprocess
import sys

import pytest

from tests.flows.small import small_config
from tests.servers import prefect_env

CHATTER = ("HTTP Request:", "Starting temporary server", "Beginning flow run", "Finished in state",
           "Running Dataset", "Total Progress", "Started a local Ray instance", "streaming_executor",
           "constructor arguments in the object store", "RayDeprecationWarning")


def cirforge(*args, home) -> str:
    env = prefect_env(home)
    env.pop("PREFECT_LOGGING_LEVEL")  # the CLI's own quieting is under test, not this setting
    out = subprocess.run([sys.executable, "-m", "pipeline.job.cli", *args], env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout + out.stderr


@pytest.mark.slow
def test_default_run_prints_phases_and_summary_and_verbose_brings_the_chatter_back(tmp_path):
    quiet = small_config(tmp_path, name="quiet", families=6, runtime={"num_cpus": 2, "progress": True})
    out = cirforge("generate", "--config", str(quiet), home=tmp_path / "prefect")
    assert not [line for line in out.splitlines() if any(c in line for c in CHATTER)], out
    for phase in ("render and mine", "generator training", "generation", "report"):
        assert phase in out, out
    assert "rows in " in out and "kept per split" in out and "report/index.html" in out, out

    loud = small_config(tmp_path, name="loud", families=6)
    out = cirforge("generate", "--config", str(loud), "--no-flow", "--verbose", home=tmp_path / "prefect")
    assert "Running Dataset" in out or "streaming_executor" in out, out  # Ray Data's own lines
