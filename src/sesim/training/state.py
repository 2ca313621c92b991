"""What a run saves and restores: networks, optimizers, schedules, every process's randomness and
image pools. Exact resume means the same numbers after a stop as without one."""

from __future__ import annotations

import random
from pathlib import Path

import torch

from sesim.checkpoint import link_checkpoint, load_checkpoint, prune_checkpoints, save_checkpoint
from sesim.config import RunConfig
from sesim.data.unpaired import mix_seed
from sesim.errors import CheckpointError
from sesim.methods import TranslationMethod
from sesim.training.distributed import Processes


def rng_state(query_rng: torch.Generator) -> dict:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": list(random.getstate()[1]),
        "python_version": random.getstate()[0],
        "queries": query_rng.get_state(),
    }


def set_rng_state(state: dict, query_rng: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    random.setstate((state["python_version"], tuple(state["python"]), None))
    query_rng.set_state(state["queries"])


def process_states(processes: Processes, query_rng: torch.Generator, method: TranslationMethod) -> list:
    """Every process's RNG and image pool (collective: all processes call it)."""
    pools = {name: pool.state_dict() for name, pool in method.pools.items()}
    return processes.gather({"rng": rng_state(query_rng), "pools": pools})


def restore_process_state(
    checkpoint: dict, processes: Processes, query_rng: torch.Generator, method: TranslationMethod, device
) -> str | None:
    """Restore this process's RNG and pool. With another number of processes than the checkpoint
    had, the shared query RNG continues and per-process randomness is re-seeded from (seed, rank,
    step); returns a note saying so."""
    states = checkpoint["processes"]
    if len(states) == processes.world_size:
        for name, pool in method.pools.items():
            pool.load_state_dict(states[processes.rank]["pools"][name], device)
        set_rng_state(states[processes.rank]["rng"], query_rng)
        return None
    seed = checkpoint["config"]["train"]["seed"]
    query_rng.set_state(states[0]["rng"]["queries"])
    reseed = mix_seed(seed, processes.rank, checkpoint["step"])
    torch.manual_seed(reseed)
    random.seed(reseed)
    for name, pool in method.pools.items():
        method.pools[name] = type(pool)(pool.size, seed=mix_seed(reseed, len(name)))
    return (
        f"resumed with {processes.world_size} processes (the checkpoint had {len(states)}): weights, optimizers, "
        "schedule, data order and query positions continue exactly; image pools start empty and "
        "per-process randomness is re-seeded"
    )


def restore_training(
    checkpoint: dict, method: TranslationMethod, schedulers: dict, processes: Processes, query_rng, device
) -> str | None:
    """Networks, optimizers and schedules from ``checkpoint``, then this process's randomness
    (:func:`restore_process_state`; its note is returned)."""
    for name, module in method.trained_modules().items():
        module.load_state_dict(checkpoint["networks"][name])
    for name, optimizer in method.optimizers.items():
        optimizer.load_state_dict(checkpoint["optimizers"][name])
    for name, scheduler in schedulers.items():
        scheduler.load_state_dict(checkpoint["schedulers"][name])
    return restore_process_state(checkpoint, processes, query_rng, method, device)


def load_initial_weights(method: TranslationMethod, source: str) -> list[str]:
    """Fine-tuning: copy the networks a checkpoint has into the new run's; returns the ones it lacked."""
    checkpoint = load_checkpoint(source)
    missing = []
    for name, module in method.trained_modules().items():
        if name not in checkpoint["networks"]:
            missing.append(name)
            continue
        try:
            module.load_state_dict(checkpoint["networks"][name])
        except RuntimeError as error:
            first = str(error).splitlines()[1].strip() if len(str(error).splitlines()) > 1 else str(error)
            raise CheckpointError(
                f"train.init_from={source}: its {name} does not fit this config's ({first}); "
                "use the same network settings (model.*) as the run you start from"
            ) from None
    return missing


def portable(state: dict) -> dict:
    """An optimizer's state dict as any run can load it: learning rates as floats and
    ``capturable`` off (a CUDA-graph run keeps them as device tensors and on; it sets them again
    when it resumes)."""
    groups = [
        {**group, "lr": float(group["lr"]), "capturable": False} if isinstance(group["lr"], torch.Tensor) else group
        for group in state["param_groups"]
    ]
    return {**state, "param_groups": groups}


class Checkpointer:
    """Writes the run's checkpoints: every process takes part (their states are gathered), rank 0
    writes ``checkpoints/NAME`` atomically, links the other names to it and prunes old steps."""

    def __init__(self, config: RunConfig, method: TranslationMethod, schedulers: dict, processes: Processes,
                 query_rng: torch.Generator) -> None:  # fmt: skip
        self.config, self.method, self.schedulers = config, method, schedulers
        self.processes, self.query_rng = processes, query_rng

    def save(self, run_dir: Path, step: int, best: dict | None, *names: str) -> None:
        states = process_states(self.processes, self.query_rng, self.method)  # collective
        if not self.processes.main:
            return
        payload = {
            "config": self.config.model_dump(mode="json"),
            "step": step,
            "networks": {name: m.state_dict() for name, m in self.method.trained_modules().items()},
            "optimizers": {name: portable(o.state_dict()) for name, o in self.method.optimizers.items()},
            "schedulers": {name: s.state_dict() for name, s in self.schedulers.items()},
            "processes": states,
            "best": best,
        }
        folder = run_dir / "checkpoints"
        first = save_checkpoint(folder / names[0], payload)
        for name in names[1:]:  # latest.pt: the same file, not a second copy
            link_checkpoint(first, folder / name)
        prune_checkpoints(folder, self.config.log.keep_checkpoints)
