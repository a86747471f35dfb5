"""Export to Hugging Face format and PEFT adapters, both ways: whatever transformers (or peft) loads from an
exported folder completes prompts greedily token for token as plainrl does. Tiny models built in-process."""

import json

import pytest
import torch
from typer.testing import CliRunner

import plainrl
from plainrl.cli import app
from plainrl.kit.errors import ConfigError
from plainrl.llm.export import char_tokenizer_for_transformers, export_policy
from plainrl.llm.generate import SamplingParams, generate
from plainrl.llm.model import ModelConfig, Transformer
from plainrl.llm.policies import load_policy
from plainrl.llm.tokenizer import CharTokenizer

transformers = pytest.importorskip("transformers")

CHARS = CharTokenizer()
PROMPTS = [f"{a}+{b}=" for a, b in zip(range(10, 90, 5), range(3, 99, 6), strict=True)]  # 16 prompts
NEW_TOKENS = 10
QUICK = dict(total_steps=3, progress=False, eval_every=0, eval_n=2, warmup_steps=0, batch_size=8)


def weights_like_training(model) -> None:
    """Larger weights than the default init, so greedy paths are not all one token."""
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0, 0.3) if param.dim() > 1 else None


@pytest.fixture(scope="module")
def hf_folders(tmp_path_factory):
    """A tiny Llama (runs as the built-in model) and a tiny Qwen2 (attention biases: wrapped as HFCausalLM), each
    with the character tokenizer in transformers' format."""
    folders = {}
    for kind, config_class, model_class in (
        ("llama", transformers.LlamaConfig, transformers.LlamaForCausalLM),
        ("qwen2", transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
    ):
        torch.manual_seed(0)
        config = config_class(
            vocab_size=CHARS.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=True,
            bos_token_id=1, eos_token_id=2, pad_token_id=0,
        )  # fmt: skip
        model = model_class(config).eval()
        weights_like_training(model)
        folder = tmp_path_factory.mktemp(kind)
        model.save_pretrained(folder)
        char_tokenizer_for_transformers(CHARS).save_pretrained(folder)
        folders[kind] = folder
    return folders


def plainrl_greedy(model, tokenizer) -> list[list[int]]:
    ids = [tokenizer.prompt_ids(p) for p in PROMPTS]
    rollout = generate(model.eval(), tokenizer, ids, SamplingParams(max_new_tokens=NEW_TOKENS, greedy=True))
    return [rollout.completion_ids[row][rollout.completion_mask[row]].tolist() for row in range(len(PROMPTS))]


def transformers_greedy(model, hf_tokenizer) -> list[list[int]]:
    """One prompt at a time (no padding), cut after the first EOS as plainrl's completions are."""
    eos = model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos])
    completions = []
    for prompt in PROMPTS:
        ids = hf_tokenizer(prompt, return_tensors="pt").input_ids
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS,
                                 do_sample=False)[0, ids.shape[1] :].tolist()  # fmt: skip
        end = next((i + 1 for i, t in enumerate(out) if t in eos), len(out))
        completions.append(out[:end])
    return completions


def reloaded(folder):
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    return model, transformers.AutoTokenizer.from_pretrained(folder)


def assert_same_greedy(ours: list[list[int]], theirs: list[list[int]]) -> None:
    assert ours == theirs
    assert len({tuple(c) for c in ours}) > 2 and any(len(set(c)) > 2 for c in ours)  # not one path for all


def test_the_character_tokenizer_in_transformers_format_gives_the_same_ids_and_text(tmp_path):
    char_tokenizer_for_transformers(CHARS).save_pretrained(tmp_path)
    loaded = transformers.AutoTokenizer.from_pretrained(tmp_path)
    for text in ("12+34=", "a b\nc!", " (7*8) - x "):
        assert loaded(text).input_ids == CHARS.prompt_ids(text)  # <bos>, then one id per character
        assert loaded.decode(CHARS.prompt_ids(text) + [CHARS.eos_id], skip_special_tokens=True) == text


def test_the_built_in_model_exports_as_llama_and_transformers_completes_as_plainrl(tmp_path):
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=CHARS.vocab_size, dim=32, n_layers=2, n_heads=4, n_kv_heads=2,
                                    hidden_dim=64, tie_embeddings=False))  # fmt: skip
    weights_like_training(model)
    folder = export_policy(model, CHARS, "tiny", tmp_path / "hf", merge_lora=False)
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["tie_word_embeddings"] is False
    assert json.loads((folder / "generation_config.json").read_text())["eos_token_id"] == [CHARS.eos_id]
    assert_same_greedy(plainrl_greedy(model, CHARS), transformers_greedy(*reloaded(folder)))


def test_a_hugging_face_model_fine_tuned_fully_exports_with_its_own_tokenizer(tmp_path, hf_folders):
    run = plainrl.train("sft", task="arithmetic", model=str(hf_folders["llama"]), run_dir=tmp_path / "sft",
                        learning_rate=1e-2, **QUICK)  # fmt: skip
    result = CliRunner().invoke(app, ["export", str(run.path), "--out", str(tmp_path / "hf")])  # the CLI's way
    assert result.exit_code == 0 and f"wrote {tmp_path / 'hf'}" in result.output
    model, hf_tokenizer = reloaded(tmp_path / "hf")
    ours = plainrl_greedy(*load_policy(str(run.path)))
    assert_same_greedy(ours, transformers_greedy(model, hf_tokenizer))
    base, base_tokenizer = reloaded(hf_folders["llama"])
    assert transformers_greedy(base, base_tokenizer) != ours  # the export holds the fine-tuned weights


@pytest.mark.parametrize("kind", ["llama", "qwen2"], ids=["built-in", "hf-wrapped"])
def test_a_lora_run_exports_merged_and_as_a_peft_adapter_and_the_adapter_loads_back(tmp_path, hf_folders, kind):
    peft = pytest.importorskip("peft")
    run = plainrl.train("sft", task="arithmetic", model=str(hf_folders[kind]), run_dir=tmp_path / "lora",
                        lora_rank=4, learning_rate=3e-2, **QUICK)  # fmt: skip
    ours = plainrl_greedy(*load_policy(str(run.path)))
    base, hf_tokenizer = reloaded(hf_folders[kind])
    assert transformers_greedy(base, hf_tokenizer) != ours  # the adapters changed the completions

    merged = plainrl.export(run.path, tmp_path / "merged", merge_lora=True)
    assert not (merged / "adapter_config.json").exists()
    assert_same_greedy(ours, transformers_greedy(*reloaded(merged)))

    adapter = plainrl.export(run.path, tmp_path / "adapter")
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4
    assert config["base_model_name_or_path"] == str(hf_folders[kind].resolve())
    with_adapter = peft.PeftModel.from_pretrained(base, adapter).eval()
    assert_same_greedy(ours, transformers_greedy(with_adapter, hf_tokenizer))

    assert_same_greedy(ours, plainrl_greedy(*load_policy(str(adapter))))  # --model DIR: base + adapter, merged


def test_a_lora_run_on_a_run_folder_exports_that_base_beside_the_adapter(tmp_path, hf_folders):
    peft = pytest.importorskip("peft")
    sft = plainrl.train("sft", task="arithmetic", model=str(hf_folders["llama"]), run_dir=tmp_path / "sft",
                        learning_rate=1e-2, **QUICK)  # fmt: skip
    run = plainrl.train("sft", task="arithmetic", model=str(sft.path), run_dir=tmp_path / "lora", lora_rank=4,
                        learning_rate=3e-2, **QUICK)  # fmt: skip
    adapter = plainrl.export(run.path, tmp_path / "adapter")
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str((adapter / "base").resolve())
    base, hf_tokenizer = reloaded(adapter / "base")
    assert_same_greedy(plainrl_greedy(*load_policy(str(sft.path))), transformers_greedy(base, hf_tokenizer))
    with_adapter = peft.PeftModel.from_pretrained(base, adapter).eval()
    assert_same_greedy(plainrl_greedy(*load_policy(str(run.path))), transformers_greedy(with_adapter, hf_tokenizer))


def test_export_and_adapter_errors_are_one_line(tmp_path):
    classic = plainrl.train("ppo", env="CartPole-v1", total_steps=64, num_envs=1, num_steps=64, progress=False,
                            run_dir=tmp_path / "ppo")  # fmt: skip
    with pytest.raises(ConfigError, match="is a ppo run; export takes the runs of language-model policies"):
        plainrl.export(classic.path, tmp_path / "out")
    (tmp_path / "hub_adapter").mkdir()
    (tmp_path / "hub_adapter" / "adapter_config.json").write_text(
        json.dumps({"peft_type": "LORA", "base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct"})
    )
    with pytest.raises(ConfigError, match="which is not a local model folder"):
        load_policy(str(tmp_path / "hub_adapter"))
