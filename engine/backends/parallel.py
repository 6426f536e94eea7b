"""One video across several GPUs: diffusers' context parallelism on a real backend's transformer(s), applied
from outside the backend.

    backend = load_parallel("wan", 4)        # rank 0 here, ranks 1..3 in processes started here, a GPU each
    generate(tl, backend, settings)          # every denoise runs on the 4 GPUs, the video tokens split 4 ways

N processes (one per GPU: NCCL; on a CPU: gloo) form one torch.distributed group. Each loads the backend and
calls diffusers' `enable_parallelism(config=ContextParallelConfig(ulysses_degree=N))` on its transformer(s):
the video token sequence is split at the transformer's entry and gathered at `proj_out`, self-attention trades
heads for sequence (Ulysses all-to-all), so each GPU holds 1/N of the activations. Rank 0 runs the engine as
usual (plan, sampler, decode); its `denoise` first broadcasts its inputs so the other ranks run the same
forward in lock-step. Ulysses, not ring: ring attention needs an attention kernel that returns the
log-sum-exp (flash, cuDNN); PyTorch's native one does not.

Where the backends differ from diffusers' pipelines, the plan follows the engine:
- text is never split: the gated cross-attention sees every text token on every rank and runs locally
  (queries: this rank's video tokens), so only the gate's rows for those tokens are needed;
- LTX: the gate's bias (B, S, L) and a per-token timestep (B, S) are split with the video tokens (a bias shared
  by every frame is expanded first); Wan: its processor's bias (B, 1, S, L) is sliced to this rank's rows.

On a machine with no accelerator diffusers 0.42.1 cannot build its device mesh (`_resolve_parallel_config`:
`rank % torch.accelerator.device_count()` -> ZeroDivisionError: integer modulo by zero); `_cpu_mesh` lends it
a device count of 1 while it does, and the same CP then runs on gloo (the two-process test does this).
"""
from __future__ import annotations

import functools
import os
import socket
import threading
from contextlib import contextmanager

import torch
import torch.distributed as dist


def device_of(rank: int) -> str:
    """The device of a rank: GPU `rank` of those this process sees (a Ray actor with N GPUs sees N), else CPU."""
    return f"cuda:{rank}" if torch.cuda.is_available() else "cpu"


@contextmanager
def _cpu_mesh():
    """diffusers divides by the accelerator count when it places a rank; with none, lend it 1 (CPU ranks)."""
    if torch.accelerator.device_count() > 0:
        yield
        return
    real = torch.accelerator.device_count
    torch.accelerator.device_count = lambda: 1
    try:
        yield
    finally:
        torch.accelerator.device_count = real


def transformers_of(backend) -> list:
    """The diffusers transformers a backend runs (Wan 2.2 A14B: two experts)."""
    models = getattr(backend, "experts", None) or [getattr(backend, "transformer", None)]
    models = [m for m in models if m is not None and hasattr(m, "enable_parallelism")]
    if not models:
        raise TypeError(f"{type(backend).__name__} has no diffusers transformer to run in parallel "
                        "(context parallelism is for the ltx and wan backends)")
    return models


def ltx_plan() -> dict:
    """LTX's CP plan with the text kept whole (the engine's gate is per video token, not per text token)."""
    from diffusers.models._modeling_parallel import ContextParallelInput as In, ContextParallelOutput as Out
    return {"": {"hidden_states": In(split_dim=1, expected_dims=3, split_output=False),
                 "encoder_attention_mask": In(split_dim=1, expected_dims=3, split_output=False),   # (B, S, L)
                 "timestep": In(split_dim=1, expected_dims=2, split_output=False)},                # (B, S) only
            "rope": {0: In(split_dim=1, expected_dims=3, split_output=True),
                     1: In(split_dim=1, expected_dims=3, split_output=True)},
            "proj_out": Out(gather_dim=1, expected_dims=3)}


def enable(backend, world: int) -> None:
    """Context parallelism over the `world` ranks of the default process group on the backend's transformer(s)."""
    from diffusers import ContextParallelConfig

    from engine.backends.ltx import LTXBackend
    plan = ltx_plan() if isinstance(backend, LTXBackend) else None              # wan: diffusers' own plan
    for model in transformers_of(backend):
        with _cpu_mesh():
            model.enable_parallelism(config=ContextParallelConfig(ulysses_degree=world), cp_plan=plan)
        for name, module in model.named_modules():
            if name.endswith("attn2") and hasattr(module.processor, "_parallel_config"):
                module.processor._parallel_config = None   # cross-attention: local queries, every text token
    if plan is not None:
        _expand_ltx_bias(backend)
    elif hasattr(backend, "processor"):
        _slice_wan_bias(backend, world)


def _expand_ltx_bias(backend) -> None:
    """The backend's gate bias, always (B, S, L) so the plan can split it with the video tokens."""
    own = backend.cross_attention_bias

    def per_token(gate: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """gate (B, F, L) -> (B, S, L)."""
        bias = own(gate, h, w)                                                   # (B, 1 or S, L)
        S = gate[:, ::backend.patch_t].shape[1] * (h // backend.patch) * (w // backend.patch)
        return bias.expand(-1, S, -1)                                            # (B, S, L)
    backend.cross_attention_bias = per_token


def _slice_wan_bias(backend, world: int) -> None:
    """Wan's cross-attention processor, reading only this rank's rows of a per-token bias (B, 1, S, L)."""
    base = type(backend.processor)
    rank, local = dist.get_rank(), threading.local()

    class Sliced(base):
        @property
        def bias(self):
            b = super().bias
            n = getattr(local, "tokens", None)
            if b is None or n is None or b.shape[-2] == 1 or b.shape[-2] == n:
                return b
            return b.tensor_split(world, dim=-2)[rank]                        # (B, 1, S/N, L), as diffusers splits

        def __call__(self, attn, hidden_states, *args, **kwargs):
            local.tokens = hidden_states.shape[1]
            return super().__call__(attn, hidden_states, *args, **kwargs)
    backend.processor = Sliced()
    backend.install_processor()


class ParallelBackend:
    """A backend whose denoise runs on every rank of the group: rank 0's engine calls it, the others follow.
    Everything else (text, media, decode, the spec) is the rank-0 backend's own. What the engine sets on it
    (ltx's frame_rate, which its rope reads) is set on the backend and sent to the others with each denoise."""
    OWN = ("backend", "world", "_followers", "_set")

    def __init__(self, backend, world: int, followers: list):
        for k, v in zip(self.OWN, (backend, world, followers, {})):
            object.__setattr__(self, k, v)

    def __getattr__(self, name):
        return getattr(self.backend, name)

    def __setattr__(self, name, value):
        setattr(self.backend, name, value)
        self._set[name] = value

    def denoise(self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """x (B, C, F, h, w), t (B, F), text (B, L, D), gate (B, F, L) -> velocity (B, C, F, h, w), on all ranks."""
        dist.broadcast_object_list([("denoise", [a.detach().cpu() for a in (x, t, text, gate)], self._set)], src=0)
        return self.backend.denoise(x, t, text, gate)

    def close(self) -> None:
        """Stop the followers and leave the group."""
        if self._followers is not None:
            dist.broadcast_object_list([("stop", [], {})], src=0)
            for p in self._followers:
                p.join(timeout=60)
            dist.destroy_process_group()
            self._followers = None


def _join(rank: int, world: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo", rank=rank, world_size=world)
    if torch.cuda.is_available():
        torch.cuda.set_device(rank)


def _follow(rank: int, world: int, port: int, loader) -> None:
    """A follower rank's whole life: load, enable CP, then run every denoise rank 0 broadcasts until "stop"."""
    _join(rank, world, port)
    backend = loader(device=device_of(rank))
    enable(backend, world)
    while True:
        msg = [None]
        dist.broadcast_object_list(msg, src=0)
        op, args, state = msg[0]
        if op == "stop":
            break
        for k, v in state.items():
            setattr(backend, k, v)
        backend.denoise(*args)
    dist.destroy_process_group()


def load_parallel(name: str, world: int, loader=None, **opts) -> ParallelBackend:
    """The backend `name` over `world` ranks: rank 0 in this process, the others started here (one GPU each).

    loader(device=...) builds one rank's backend (default: the registry's load_backend(name, **opts))."""
    import torch.multiprocessing as mp

    from engine.backends.registry import load_backend
    if world < 2:
        raise ValueError(f"gpus: context parallelism needs 2 or more ranks, not {world}")
    loader = loader or functools.partial(load_backend, name, **opts)
    with socket.socket() as s:  # a free port for the group's rendezvous, on this machine only
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    followers = [ctx.Process(target=_follow, args=(r, world, port, loader), daemon=True) for r in range(1, world)]
    for p in followers:
        p.start()
    _join(0, world, port)
    backend = loader(device=device_of(0))
    enable(backend, world)
    return ParallelBackend(backend, world, followers)
