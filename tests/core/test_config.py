from __future__ import annotations

from pathlib import Path

import pytest

from ragtune.core.config import config_from_json, env_overrides, load_config, parse_set_flags
from ragtune.core.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "psychiatry" / "ragtune.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ragtune.yaml"
    path.write_text(text)
    return path


def test_defaults_choose_embedded_backends() -> None:
    config = load_config(environ={})
    assert config.parse.grobid_url is None
    assert config.index.store.weaviate_url is None
    assert config.llm.generator.base_url is None
    assert config.cache_uri() == str(Path("runs") / "cache")


def test_example_config_is_valid() -> None:
    config = load_config(EXAMPLE, environ={})
    assert config.corpus.uri


def test_unknown_key_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "index:\n  chunk_tokenz: 100\n")
    with pytest.raises(ConfigError, match=r"index\.chunk_tokenz: unknown key"):
        load_config(path, environ={})


def test_bad_value_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "parse:\n  grobid_concurrency: lots\n")
    with pytest.raises(ConfigError, match=r"parse\.grobid_concurrency"):
        load_config(path, environ={})


def test_cross_field_rule(tmp_path: Path) -> None:
    path = write(tmp_path, "index:\n  chunk_tokens: 64\n  chunk_overlap: 64\n")
    with pytest.raises(ConfigError, match=r"index\.chunk_overlap: .*smaller than chunk_tokens"):
        load_config(path, environ={})


def test_precedence_yaml_then_env_then_flags(tmp_path: Path) -> None:
    path = write(tmp_path, "index:\n  chunk_tokens: 100\n  chunk_overlap: 10\nrun:\n  seed: 1\n")
    environ = {
        "RAGTUNE_INDEX__CHUNK_TOKENS": "150",
        "RAGTUNE_RUN__SEED": "2",
        "RAGTUNE_TEST_WEAVIATE_URL": "x",
    }
    flags = parse_set_flags(["run.seed=3"])
    config = load_config(path, overrides=flags, environ=environ)
    assert config.index.chunk_tokens == 150  # env beats YAML
    assert config.run.seed == 3  # flag beats env
    assert config.index.chunk_overlap == 10  # untouched YAML value survives


def test_env_ignores_variables_without_section_separator() -> None:
    assert env_overrides(
        {"RAGTUNE_TEST_WEAVIATE_URL": "http://x", "RAGTUNE_PARSE__GROBID_URL": "http://g"}
    ) == {"parse.grobid_url": "http://g"}


def test_bad_set_flag() -> None:
    with pytest.raises(ConfigError, match=r"expected section\.key=value"):
        parse_set_flags(["no-equals-sign"])


def test_unknown_key_from_env_is_named() -> None:
    with pytest.raises(ConfigError, match=r"parse\.nope: unknown key"):
        load_config(environ={"RAGTUNE_PARSE__NOPE": "1"})


def test_json_round_trip_for_components(tmp_path: Path) -> None:
    config = load_config(overrides={"run.seed": 7, "parse.grobid_url": "http://grobid:8070"}, environ={})
    again = config_from_json(config.to_json())
    assert again == config


def test_top_level_must_be_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"), environ={})


def test_component_overrides_skip_empty_ui_fields() -> None:
    base = load_config(overrides={"corpus.uri": "s3://team/corpus"}, environ={})
    unchanged = config_from_json(base.to_json(), {"corpus.uri": "", "run.seed": None})
    assert unchanged.corpus.uri == "s3://team/corpus"
    changed = config_from_json(base.to_json(), {"corpus.uri": "s3://other/docs", "run.seed": 4})
    assert (changed.corpus.uri, changed.run.seed) == ("s3://other/docs", 4)


def test_component_override_with_bad_value_is_named() -> None:
    with pytest.raises(ConfigError, match=r"index\.chunk_tokens"):
        config_from_json("{}", {"index.chunk_tokens": "many"})


def test_relative_paths_become_absolute_remote_untouched(tmp_path: Path) -> None:
    from ragtune.core.config import with_absolute_paths

    config = load_config(overrides={"corpus.uri": "docs", "cache.uri": "s3://b/cache"}, environ={})
    resolved = with_absolute_paths(config, tmp_path)
    assert resolved.corpus.uri == str(tmp_path / "docs")
    assert resolved.run.root == str(tmp_path / "runs")
    assert resolved.cache.uri == "s3://b/cache"
    assert config.corpus.uri == "docs"  # the original is not modified


def test_component_config_applies_pod_env_under_ui_fields() -> None:
    environ = {"RAGTUNE_PARSE__GROBID_URL": "http://grobid:8070", "RAGTUNE_RUN__SEED": "5"}
    config = config_from_json("{}", {"run.seed": 9}, environ=environ)
    assert config.parse.grobid_url == "http://grobid:8070"  # endpoint from the pod's ConfigMap
    assert config.run.seed == 9  # the UI field wins over the env
    assert config_from_json("{}", {}, environ=None).parse.grobid_url is None  # no env unless asked


def test_ui_string_fields_are_validated_as_their_keys() -> None:
    config = config_from_json(
        "{}", {"train.lora_r": "16", "registry.promotion_margin": "0.25", "corpus.uri": ""}
    )
    assert (config.train.lora_r, config.registry.promotion_margin) == (16, 0.25)
    assert config.corpus.uri == "examples/psychiatry/corpus"
    with pytest.raises(ConfigError, match=r"train\.lora_r"):
        config_from_json("{}", {"train.lora_r": "sixteen"})
