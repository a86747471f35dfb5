from dataclasses import dataclass

import pytest

from plainrl.kit.config import EnvConfig, apply, build_config, parse_set, require
from plainrl.kit.errors import ConfigError


@dataclass
class ToyConfig(EnvConfig):
    gamma: float = 0.99
    hidden_sizes: tuple[int, ...] = (64, 64)
    normalize: bool = False

    def validate(self) -> None:
        super().validate()
        require(0 < self.gamma <= 1, f"gamma = {self.gamma} must be in (0, 1]")


PRESETS = {"Acrobot-v1": {"gamma": 0.95, "total_steps": 5000}}


def test_parse_set_reads_toml_literals_and_bare_words():
    assert parse_set(["gamma=0.9", "hidden_sizes=[32, 32]", "env=CartPole-v1", "normalize=true"]) == {
        "gamma": 0.9, "hidden_sizes": [32, 32], "env": "CartPole-v1", "normalize": True,
    }  # fmt: skip
    with pytest.raises(ConfigError, match="key=value"):
        parse_set(["gamma"])


def test_precedence_defaults_preset_file_set_flags(tmp_path):
    file = tmp_path / "c.toml"
    file.write_text("gamma = 0.9\ntotal_steps = 7000\nhidden_sizes = [8]\n")
    config = build_config(ToyConfig, PRESETS, {"env": "Acrobot-v1", "seed": 3, "device": None}, file, ["gamma=0.8"])
    assert (config.env, config.gamma, config.total_steps, config.seed) == ("Acrobot-v1", 0.8, 7000, 3)
    assert config.hidden_sizes == (8,)
    assert build_config(ToyConfig, PRESETS, {"env": "Acrobot-v1"}).gamma == 0.95  # the preset applies


def test_values_are_coerced_to_field_types():
    config = apply(ToyConfig(), {"total_steps": 1e5, "gamma": 1, "hidden_sizes": "32,16", "normalize": "yes"}, "x")
    assert config.total_steps == 100_000 and isinstance(config.total_steps, int)
    assert config.gamma == 1.0 and config.hidden_sizes == (32, 16) and config.normalize is True


@pytest.mark.parametrize(
    "values, message",
    [
        ({"gama": 0.9}, r"unknown key 'gama' in --set \(did you mean: gamma"),
        ({"total_steps": 1.5}, "total_steps expects an integer, got 1.5"),
        ({"gamma": "high"}, "gamma expects a number, got 'high'"),
        ({"normalize": "maybe"}, "normalize expects true or false"),
    ],
)
def test_bad_keys_and_types_are_named(values, message):
    with pytest.raises(ConfigError, match=message):
        apply(ToyConfig(), values, "--set")


@pytest.mark.parametrize(
    "item, message",
    [
        ("gamma=1.5", r"gamma = 1.5 must be in \(0, 1\]"),
        ("gamma=0", r"gamma = 0.0 must be in \(0, 1\]"),
        ("total_steps=0", "total_steps = 0 must be > 0"),
        ("device=tpu", "device = 'tpu' is not one of"),
        # the hostile values that gave tracebacks before (a fuzz of every field of six algorithms)
        ("seed=-1", r"seed = -1 must be in \[0, 4294967295\]"),
        ("seed=1e30", r"seed expects an integer of at most 2\*\*63 - 1, got 1e\+30"),
        ("torch_threads=1e30", "torch_threads expects an integer of at most"),
        ("torch_threads=5000", r"torch_threads = 5000 must be in \[1, 1024\]"),
        ("gamma=nan", "gamma expects a finite number, got nan"),
        ("gamma=inf", "gamma expects a finite number, got inf"),
    ],
)
def test_out_of_range_values_are_rejected(item, message):
    with pytest.raises(ConfigError, match=message):
        build_config(ToyConfig, {}, set_items=[item])


def test_bad_config_files(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("gamma = = 3\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        build_config(ToyConfig, {}, config_file=bad)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("learning_rat = 0.1\n")
    with pytest.raises(ConfigError, match="unknown key 'learning_rat' in config file"):
        build_config(ToyConfig, {}, config_file=unknown)
    with pytest.raises(ConfigError, match="does not exist"):
        build_config(ToyConfig, {}, config_file=tmp_path / "missing.toml")


@pytest.mark.parametrize(
    "algo, item, message",
    [
        ("dqn", "buffer_size=1e30", "buffer_size expects an integer of at most"),
        ("dqn", "buffer_size=1e15", r"buffer_size = 1000000000000000 must be in \[batch_size, 100000000\]"),
        ("grpo", "prompts_per_step=1e12", r"prompts_per_step = 1000000000000 must be in \[1, 100000\]"),
        ("sft", "learning_rate=0", r"learning_rate = 0.0 must be > 0 \(or none: automatic\)"),
        ("sft", "max_new_tokens=1e9", r"max_new_tokens = 1000000000 must be in \[1, 100000\]"),
        ("sft", "tiny_n_heads=0", "tiny_n_heads = 0 must be >= 1"),  # was a ZeroDivisionError
        ("grpo", "weight_decay=-1", r"weight_decay = -1.0 must be >= 0"),  # was AdamW's ValueError
    ],
)
def test_algorithm_fields_reject_hostile_values(algo, item, message):
    from plainrl.kit.registry import load_algorithm

    module = load_algorithm(algo)
    with pytest.raises(ConfigError, match=message):
        build_config(module.Config, module.PRESETS, set_items=[item])
