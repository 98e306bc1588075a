"""The command line: the closing summary of `generate`, and a configured backend that is missing."""
import sys

from typer.testing import CliRunner

from generators.mtst.vllm_backend import vllm_install_line
from pipeline.job.cli import app
from pipeline.console import summary
from tests.flows.small import small_config


def test_summary_gives_rows_reasons_and_where_the_files_are(tmp_path):
    manifest = {"state": "complete", "units_committed": 2, "units_total": 2,
                "rows": {"in": 10, "kept": 7, "rejected": 3, "per_split": {"train": 6, "test": 1}},
                "reject_reasons": {"exact:forward": 1, "exact:reverse": 2}}
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "index.html").write_text("")
    text = summary(manifest, tmp_path)
    assert "rows in 10 = kept 7 + rejected 3" in text and "train 6, test 1" in text
    lines = text.splitlines()
    assert lines.index(next(x for x in lines if "exact:reverse" in x)) < \
        lines.index(next(x for x in lines if "exact:forward" in x))  # the largest reason first
    assert "report/index.html" in text and f"files in {tmp_path}/" in text
    assert "report/index.html" not in summary(manifest, tmp_path / "elsewhere")  # no report written


def test_vllm_backend_configured_but_missing_fails_before_the_run_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm now raises ImportError
    path = small_config(tmp_path, generator={"kind": "mtst", "mtst": {"infer": {"backend": "vllm"}}})
    result = CliRunner().invoke(app, ["generate", "--config", str(path)])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and vllm_install_line() in result.output, result.output
    assert not (tmp_path / "out").exists()
