"""torchrun data-parallel and FSDP training (kit/distributed.py), tested with real processes on gloo: each test
starts torchrun itself. Expected values are those of one process with the whole batch."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import plainrl
from plainrl.kit.distributed import Shard, World
from plainrl.kit.errors import PlainRLError
from plainrl.llm.grpo import grpo_loss
from plainrl.llm.sampling import SamplingParams, sample_next
from tests.kit import distributed_job as job

JOB = Path(job.__file__)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(JOB.parents[2]), "PLAINRL_COLLECTIVE_TIMEOUT_S": "60"}


def torchrun(*args: str, nproc: int = 2, timeout: float = 300, launch: tuple[str, ...] = ("--standalone",)) -> str:
    """Run `torchrun --nproc_per_node nproc ARGS`; its output, or a failure showing it."""
    command = [sys.executable, "-m", "torch.distributed.run", *launch, f"--nproc_per_node={nproc}", *args]
    done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=timeout)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    return output


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    state = torch.load(run_dir / "checkpoints/latest.pt", map_location="cpu", weights_only=False)
    return {f"{part}.{name}": v for part in ("model", "critic", "agent") for name, v in state.get(part, {}).items()}


def max_difference(one: dict[str, torch.Tensor], two: dict[str, torch.Tensor]) -> float:
    assert one.keys() == two.keys()
    return max(float((one[k].double() - two[k].double()).abs().max()) for k in one if one[k].is_floating_point())


# ----- the pieces, in one process ---------------------------------------------------------------------------------
def test_a_shard_draws_the_noise_one_process_draws_for_its_rows() -> None:
    whole = Shard(0, 6, 6).uniform(torch.Generator().manual_seed(3), "cpu", 2)
    second = Shard(3, 6, 6).uniform(torch.Generator().manual_seed(3), "cpu", 2)
    assert torch.equal(whole[3:], second)
    logits = torch.randn(6, 50, generator=torch.Generator().manual_seed(0))
    params = SamplingParams(temperature=1.0, top_k=20)
    tokens, _ = sample_next(logits, params, torch.Generator().manual_seed(5))
    half, _ = sample_next(logits[3:], params, torch.Generator().manual_seed(5), Shard(3, 6, 6))
    assert torch.equal(tokens[3:], half)


def test_inverse_cdf_sampling_never_draws_a_cut_token_and_follows_the_probabilities() -> None:
    logits = torch.tensor([[0.0, 2.0, -1.0, 1.0]]).expand(20_000, 4)
    tokens, _ = sample_next(logits, SamplingParams(top_k=2), torch.Generator().manual_seed(0))
    assert set(tokens.tolist()) == {1, 3}  # tokens 0 and 2 are outside the top 2
    share = (tokens == 1).float().mean().item()
    assert abs(share - 1 / (1 + torch.e**-1)) < 0.01  # e^2 / (e^2 + e^1)


@pytest.mark.parametrize("aggregation", ["sequence_mean", "token_mean", "constant"])
def test_grpo_loss_shares_of_two_ranks_add_up_to_the_whole_batch_loss(aggregation: str) -> None:
    g = torch.Generator().manual_seed(0)
    logprobs, old, ref = (torch.randn(4, 5, generator=g) * 0.1 for _ in range(3))
    advantages = torch.tensor([1.0, -1.0, 0.5, -0.5])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 0, 0]], dtype=torch.bool)
    args = (0.2, 0.2, aggregation, 5, 0.04)
    whole = grpo_loss(logprobs, old, advantages, mask, *args, ref, "k3")[0]
    tokens = mask.sum().float()
    shares = [grpo_loss(logprobs[r], old[r], advantages[r], mask[r], *args, ref[r], "k3", 4.0, tokens)[0]
              for r in (slice(0, 2), slice(2, 4))]  # fmt: skip
    assert torch.allclose(shares[0] + shares[1], whole, atol=1e-7)
    # The classic bug: each rank normalising by its own counts, then averaging, gives another loss.
    own = [
        grpo_loss(logprobs[r], old[r], advantages[r], mask[r], *args, ref[r], "k3")[0]
        for r in (slice(0, 2), slice(2, 4))
    ]
    if aggregation == "token_mean":  # 7 and 4 tokens: the per-rank means weigh the tokens unequally
        assert not torch.allclose((own[0] + own[1]) / 2, whole, atol=1e-4)


def test_a_bad_collective_timeout_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from plainrl.kit.distributed import collective_timeout

    monkeypatch.setenv("PLAINRL_COLLECTIVE_TIMEOUT_S", "soon")
    with pytest.raises(PlainRLError, match="PLAINRL_COLLECTIVE_TIMEOUT_S = 'soon' must be a whole number of seconds"):
        collective_timeout()


def test_a_world_of_one_splits_nothing_and_refuses_an_uneven_split() -> None:
    assert World().shard(8, "batch_size") == Shard(0, 8, 8)
    assert World(rank=1, size=2).shard(8, "batch_size") == Shard(4, 8, 8)
    with pytest.raises(PlainRLError, match="prompts_per_step = 3 cannot be split over 2 processes"):
        World(rank=0, size=2).shard(3, "prompts_per_step")


# ----- real processes --------------------------------------------------------------------------------------------
def test_two_processes_with_half_the_batch_each_reach_the_single_process_parameters(tmp_path: Path) -> None:
    """sft (full and LoRA), grpo (3 aggregations, beta > 0), dpo, reward-model, ppo-llm, distill-draft, classic
    ppo and a2c: 3 optimizer steps on 2 ranks (gradients all-reduced; then the LLM trainers FSDP2-sharded) against
    1 process, max abs difference <= 1e-5."""
    job.write_pairs(tmp_path)
    names = list(job.cases(tmp_path))
    torchrun(str(JOB), str(tmp_path), "ddp", *names)
    llm = [name for name in names if name not in ("ppo", "a2c", "distill")]  # the trainers that shard (fsdp = true)
    torchrun(str(JOB), str(tmp_path), "fsdp", *llm)
    for name in names:
        job.train_case(tmp_path, tmp_path / "one", name)
        one = weights(tmp_path / "one" / name)
        for mode in ("ddp", "fsdp") if name in llm else ("ddp",):
            assert max_difference(one, weights(tmp_path / mode / name)) <= 1e-5, (name, mode)
            # Adam's steps hardly change when every gradient is scaled by one factor; the gradient norm does.
            norms = [[row.get("grad_norm") for row in plainrl.RunFolder(folder).metrics]
                     for folder in (tmp_path / "one" / name, tmp_path / mode / name)]  # fmt: skip
            if None not in norms[0]:  # classic ppo and a2c log no gradient norm
                assert norms[0] == pytest.approx(norms[1], rel=1e-4), (name, mode, norms)
    assert max_difference(one, {k: torch.zeros_like(v) for k, v in one.items()}) > 0  # the weights are real
    from safetensors.torch import load_file  # LoRA adapters of a sharded run: gathered whole by rank 0

    adapters = [load_file(tmp_path / mode / "sft-lora/adapter/adapter.safetensors") for mode in ("one", "fsdp")]
    assert len(adapters[0]) > 0 and max_difference(*adapters) <= 1e-5
    # Rank 0 wrote the run folder; the metrics are every rank's mean.
    rows = plainrl.RunFolder(tmp_path / "ddp" / "grpo-token_mean").metrics
    assert [row["step"] for row in rows] == [1, 2, 3]
    with pytest.raises(PlainRLError, match="trained by 2 process"):  # another number of processes: refused
        plainrl.resume(tmp_path / "ddp" / "sft")


def test_a_rank_that_raises_ends_the_job_quickly_and_is_named(tmp_path: Path) -> None:
    started = time.perf_counter()
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(JOB),
               str(tmp_path), "fail"]  # fmt: skip
    done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert time.perf_counter() - started < 60
    output = done.stdout + done.stderr
    assert "[rank1]" in output and "fails on purpose at step 2" in output


def test_a_torchrun_grpo_run_killed_with_sigkill_resumes_to_its_planned_steps(tmp_path: Path) -> None:
    run_dir = tmp_path / "slow"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(JOB),
               str(tmp_path), "slow"]  # fmt: skip
    process = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        metrics = run_dir / "metrics.csv"
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 4:  # 3 steps logged; checkpoint at 2
            break
        time.sleep(0.1)
    assert process.poll() is None, "the run ended before it could be killed"
    for pid in [process.pid, *descendants(process.pid)]:  # torchrun and both ranks (in sessions of their own)
        os.kill(pid, signal.SIGKILL)
    process.wait()
    output = torchrun("-m", "plainrl", "resume", str(run_dir), "--no-progress")
    assert re.search(r"resuming \S+ at step [246] of 8", output), output[-2000:]  # from the last checkpoint
    steps = [row["step"] for row in plainrl.RunFolder(run_dir).metrics]
    assert steps == [1, 2, 3, 4, 5, 6, 7, 8]
    assert (run_dir / "eval.json").is_file()


def test_two_machines_on_one_host_train_grpo_with_c10d_rendezvous(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    run_dir = tmp_path / "two-nodes"
    settings = ["prompts_per_step=2", "group_size=4", "max_new_tokens=8", "eval_every=0", "eval_n=4"]
    train = ["-m", "plainrl", "train", "grpo", "--total-steps", "3", "--run-dir", str(run_dir), "--no-progress",
             "--device", "cpu", *[part for item in settings for part in ("--set", item)]]  # fmt: skip
    rendezvous = ["--nnodes=2", "--nproc_per_node=1", "--rdzv-backend=c10d", f"--rdzv-endpoint=localhost:{port}",
                  "--rdzv-id=plainrl-test"]  # fmt: skip
    nodes = [
        subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", *rendezvous, f"--node_rank={rank}", *train],
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for rank in (0, 1)
    ]
    outputs = [node.communicate(timeout=180)[0] for node in nodes]
    assert all(node.returncode == 0 for node in nodes), outputs[0][-3000:] + outputs[1][-3000:]
    assert [row["step"] for row in plainrl.RunFolder(run_dir).metrics] == [1, 2, 3]


def test_a_one_process_algorithm_is_refused_in_a_world_of_several(monkeypatch: pytest.MonkeyPatch) -> None:
    from plainrl import api
    from plainrl.kit import distributed
    from plainrl.kit.registry import load_algorithm

    monkeypatch.setattr(distributed, "WORLD", World(rank=0, size=2))
    dqn = load_algorithm("dqn")
    with pytest.raises(PlainRLError, match="dqn trains in one process; under torchrun .* ppo"):
        api.check("dqn", dqn, dqn.Config())


def test_under_torchrun_an_uneven_batch_is_refused_in_one_line(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "plainrl",
               "train", "grpo", "--run-dir", str(tmp_path / "r"), "--set", "prompts_per_step=3",
               "--device", "cpu"]  # fmt: skip
    done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "rank 0: error: prompts_per_step = 3 cannot be split over 2 processes" in done.stderr
    assert "plainrl/" not in done.stderr  # no rank printed a traceback (torchrun adds its own failure report)
    assert not (tmp_path / "r").exists()
