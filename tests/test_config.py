import json

import pytest

from restorevar.models.config import ConfigError
from restorevar.models.presets import get_preset, list_presets
from restorevar.models.registry import config_from_dict
from restorevar.models.restorevar.config import RestoreVARConfig


def test_presets_exist_and_validate():
    assert {"restorevar-paper-512", "restorevar-paper-256", "restorevar-small", "restorevar-tiny"} <= set(
        list_presets()
    )
    assert get_preset("small") == get_preset("restorevar-small")  # the short names of earlier releases
    assert get_preset("paper-512").tokenizer.num_tokens == 2240
    assert get_preset("paper-256").tokenizer.num_tokens == 680
    assert get_preset("tiny").tokenizer.num_tokens == 130


def test_json_round_trip(tmp_path):
    for name in list_presets():
        config = get_preset(name)
        config.save(tmp_path / f"{name}.json")
        assert config_from_dict(json.loads((tmp_path / f"{name}.json").read_text())) == config
        assert type(config).load(tmp_path / f"{name}.json") == config


def test_a_config_of_another_family_is_refused():
    with pytest.raises(ConfigError, match="model type 'restorevar-extended', not 'restorevar'"):
        RestoreVARConfig.from_dict(get_preset("small").to_dict())
    with pytest.raises(ConfigError, match="unknown model_type 'nope'"):
        config_from_dict({"model_type": "nope"})


def test_unknown_keys_are_errors(tmp_path):
    data = get_preset("tiny").to_dict()
    data["transformer"]["dept"] = 3
    (tmp_path / "c.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="unknown key.*dept"):
        RestoreVARConfig.load(tmp_path / "c.json")


def test_bad_schedule_and_unknown_preset():
    data = get_preset("tiny").to_dict()
    data["tokenizer"]["patch_nums"] = [1, 2, 4]
    with pytest.raises(ConfigError, match="ends at 4.*8×8"):
        RestoreVARConfig.from_dict(data)
    with pytest.raises(ConfigError, match="unknown preset 'huge'.*restorevar-paper-512"):
        get_preset("huge")
