"""The docs that are generated from code stay true."""
from pathlib import Path

from pipeline.job.config_doc import render


def test_config_reference_is_current():
    assert Path("docs/config.md").read_text() == render(), (
        "docs/config.md is stale: run `cirforge config-reference --out docs/config.md`")
