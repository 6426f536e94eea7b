"""Memory settings of the diffusers backends (issue 22): how a model that does not fit a consumer GPU runs.

Each mode is one of diffusers' own hooks, installed on the backend's modules:

| word        | what it does                                                       | diffusers facility                    |
| ----------- | ------------------------------------------------------------------ | ------------------------------------- |
| `none`      | every part stays on the GPU                                        | -                                     |
| `model`     | text encoder, transformer(s), VAE visit the GPU one at a time      | `enable_model_cpu_offload`            |
| `group`     | the transformer's blocks stream in (with CUDA streams), rest leaf  | `apply_group_offloading`              |
| `fp8`       | transformer weights stored in float8_e4m3fn, computed in the dtype | `enable_layerwise_casting`            |
| `tiling`    | the VAE decodes (and encodes) tile by tile                         | `vae.enable_tiling`                   |
| `slicing`   | the VAE takes one video of a batch at a time                       | `vae.enable_slicing`                  |

A setting is written as words joined by "+" ("group+fp8+tiling"); "auto" is the backend's default for
the device (DEFAULTS: nothing to offload to on a CPU). `none`, `model` and `group` give the same frames
(tested bit for bit on the CPU); `fp8` rounds the weights (tested within a stated tolerance).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from engine.params import InputError

OFFLOADS = ("none", "model", "group")
FLAGS = ("fp8", "tiling", "slicing")


@dataclass(frozen=True)
class Memory:
    offload: str = "none"        # one of OFFLOADS
    fp8: bool = False            # layerwise float8 storage of the transformer(s)
    tiling: bool = False         # VAE tiling
    slicing: bool = False        # VAE slicing

    def __str__(self) -> str:
        return "+".join([self.offload] + [f for f in FLAGS if getattr(self, f)])


# What a person with one 24 GB card wants by default (weights in bf16: LTX 2B and Wan 1.3B fit whole;
# Wan 2.2 5B + its 11 GB UMT5 encoder do not beside 121-frame activations; A14B's two 14B experts never do).
DEFAULTS = {"ltx": "none", "wan": "none", "wan22-5b": "model+tiling", "wan22-14b": "group+tiling",
            "ltx2": "model+tiling"}


def parse(text: str | Memory | None, backend: str = "", device: str | torch.device = "cpu") -> Memory:
    """'group+fp8+tiling' -> Memory; None / "auto": $CINEPATCH_MEMORY, else the backend's default on a GPU and
    none on a CPU. A one-line InputError names the field `memory` and the words allowed."""
    if isinstance(text, Memory):
        return text
    text = (text or os.environ.get("CINEPATCH_MEMORY") or "auto").strip().lower()
    if text == "auto":
        text = DEFAULTS.get(backend, "none") if torch.device(device).type != "cpu" else "none"
    words = [w.strip() for w in text.split("+") if w.strip()]
    offloads = [w for w in words if w in OFFLOADS]
    bad = [w for w in words if w not in OFFLOADS + FLAGS]
    if bad or len(offloads) > 1 or not words:
        raise InputError(f"memory: {text!r} is not a memory setting; write auto, or one of {', '.join(OFFLOADS)} "
                         f"with any of {', '.join(FLAGS)} joined by '+' (e.g. group+fp8+tiling)")
    return Memory(offloads[0] if offloads else "none", *(f in words for f in FLAGS))


def install(backend, memory: Memory) -> None:
    """The memory setting's hooks on a backend's modules, which must all be on the CPU or the device already;
    the backend keeps calling its modules as usual (the hooks move weights where the call needs them)."""
    dev = backend.device
    experts = [m for m in (backend.transformer, getattr(backend, "transformer_2", None)) if m is not None]
    if memory.fp8:  # before offload hooks: the stored weights that move are then float8 (half of bf16's bytes)
        for m in experts:
            m.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=backend.dtype)
    if memory.offload == "model":
        backend.pipeline_view().enable_model_cpu_offload(device=dev)
    elif memory.offload == "group":
        from diffusers.hooks import apply_group_offloading
        stream = dev.type == "cuda"  # overlapping transfers with compute needs CUDA streams
        for m in experts:
            apply_group_offloading(m, onload_device=dev, offload_device="cpu", offload_type="block_level",
                                   num_blocks_per_group=1, use_stream=stream)
        for m in (backend.text_encoder, backend.vae):
            apply_group_offloading(m, onload_device=dev, offload_device="cpu", offload_type="leaf_level",
                                   use_stream=stream)
    else:
        for m in (*experts, backend.text_encoder, backend.vae):
            m.to(dev)
    if memory.tiling:
        backend.vae.enable_tiling()
    if memory.slicing:
        backend.vae.enable_slicing()
