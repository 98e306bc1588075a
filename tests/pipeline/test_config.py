"""A bad config gives one line that names the key, the value and what is allowed."""
import pytest

from pipeline.job.config import ConfigError, RunConfig, load_config, parse_config


def write(tmp_path, text):
    p = tmp_path / "run.yaml"
    p.write_text(text)
    return p


def test_demo_config_loads():
    cfg = load_config("configs/demo.yaml")
    assert cfg.source.kind == "shapesworld"


def test_unknown_key_names_key_and_allowed(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, "shards:\n  rows_per_unt: 10\n"))
    msg = str(e.value)
    assert "shards.rows_per_unt" in msg and "rows_per_unit" in msg and "\n" not in msg


def test_wrong_type_names_key_and_value(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, "seed: twelve\n"))
    assert "'seed'" in str(e.value) and "twelve" in str(e.value)


def test_bad_literal_lists_allowed_values(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, "source:\n  kind: webcam\n"))
    assert "source.kind" in str(e.value) and "folder" in str(e.value)


def test_missing_config_file_and_missing_source_path(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="source.path"):
        load_config(write(tmp_path, f"source:\n  kind: folder\n  path: {tmp_path / 'missing'}\n"))


def test_splits_must_add_up():
    with pytest.raises(ConfigError, match="add up"):
        parse_config({"splits": {"train": 0.5, "val": 0.1, "test": 0.1}})


def test_config_hash_ignores_output_place_not_content(tmp_path):
    a = RunConfig()
    assert a.config_hash() == RunConfig(out_dir=tmp_path).config_hash()
    assert a.config_hash() != RunConfig(seed=1).config_hash()


def test_overrides_apply_dotted_keys():
    cfg = load_config("configs/demo.yaml", {"shards.rows_per_unit": 7, "seed": 3})
    assert cfg.shards.rows_per_unit == 7 and cfg.seed == 3


def test_nightly_config_errors_are_one_line_naming_the_key():
    from trainers.nightly import load_nightly_config

    with pytest.raises(ValueError) as e:  # under a section that is null by default
        load_nightly_config(None, {"finetune.epochz": 1})
    msg = str(e.value)
    assert "nightly config (defaults)" in msg and "'finetune.epochz'" in msg and "allowed here:" in msg
    assert "seed" in msg and "\n" not in msg
    with pytest.raises(ValueError, match="finetune_dir") as e:
        load_nightly_config(None, {"finetune.seed": 1})
    assert "\n" not in str(e.value)


def test_mtst_and_reproduce_config_errors_are_one_line_naming_the_key(tmp_path):
    from generators.mtst.config import load_mtst_config
    from trainers.reproduce import load_reproduce_config

    bad = tmp_path / "run.yaml"
    bad.write_text("generator:\n  mtst:\n    train:\n      epochz: 3\n")
    with pytest.raises(ValueError) as e:
        load_mtst_config(bad)
    msg = str(e.value)
    assert str(bad) in msg and "(generator.mtst)" in msg and "'train.epochz'" in msg and "epochs" in msg
    assert "\n" not in msg
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_mtst_config(tmp_path / "missing.yaml")
    with pytest.raises(ValueError) as e:
        load_reproduce_config(None, {"workers": "abc"})
    assert "'workers'" in str(e.value) and "'abc'" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_reproduce_config(tmp_path / "missing.yaml")
