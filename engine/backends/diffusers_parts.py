"""What the diffusers-backed backends (ltx, wan) share: their model folder, device placement
and offload, and the posterior-mode encode of injected media."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import torch

from engine.params import InputError

# The parts of a diffusers pipeline folder a backend loads (model_index.json names them).
PARTS = {"transformer": "config.json", "vae": "config.json", "text_encoder": "config.json",
         "tokenizer": None, "scheduler": "scheduler_config.json"}


def env_var(name: str) -> str:
    """The variable naming a backend's folder: CINEPATCH_WAN22_5B_MODEL for wan22-5b."""
    return f"CINEPATCH_{name.upper().replace('-', '_')}_MODEL"


def default_model_path(name: str) -> str | None:
    """$CINEPATCH_<NAME>_MODEL, else $CINEPATCH_MODELS/<name> when that variable is set."""
    if os.environ.get(env_var(name)):
        return os.environ[env_var(name)]
    if os.environ.get("CINEPATCH_MODELS"):
        return str(Path(os.environ["CINEPATCH_MODELS"]) / name)
    return None


def check_folder(path, name: str, title: str, extra: tuple[str, ...] = ()) -> Path:
    """The folder, or a one-line InputError naming it, the backend and what is missing.

    extra: more model parts the backend needs (Wan 2.2 A14B's transformer_2), each checked as transformer is.
    """
    if path is None:
        raise InputError(f"model: the {name} backend needs a model folder in diffusers' layout; "
                         f"pass --model PATH or set {env_var(name)}")
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise InputError(f"model: {folder} is missing (the {name} backend needs a {title} folder in "
                         f"diffusers' layout)")
    missing = []
    for part, cfg in {**PARTS, **{e: PARTS["transformer"] for e in extra}}.items():
        sub = folder / part
        if not sub.is_dir() or not any(sub.iterdir()):
            missing.append(f"{part}/")
        elif cfg is not None and not (sub / cfg).exists():
            missing.append(f"{part}/{cfg}")
        elif part in ("transformer", "vae", "text_encoder", *extra) and not any(
                p.suffix in (".safetensors", ".bin") for p in sub.iterdir()):
            missing.append(f"{part} weights")
    if missing:
        raise InputError(f"model: {folder} is incomplete for the {name} backend: missing {', '.join(missing)}")
    return folder


def aligned(model):
    """The model with every parameter in 64-byte-aligned memory. diffusers' accelerate loader can leave weights
    at the file's offsets; CPU kernels then sum in another order (3e-7 apart from the same model in memory)."""
    for p in model.parameters():
        if p.data_ptr() % 64:
            p.data = p.data.clone()
    return model


def meta_parts(folder: Path, transformer_cls, vae_cls):
    """The transformer and VAE of a checked folder built from their configs on the meta device: diffusers'
    own classes fill the defaults and derive the compression, and no weight is read or allocated."""
    try:
        tcfg = transformer_cls.load_config(folder, subfolder="transformer", local_files_only=True)
        vcfg = vae_cls.load_config(folder, subfolder="vae", local_files_only=True)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        raise InputError(f"model: {folder} could not be read ({first[:200]})") from None
    with torch.device("meta"):
        return transformer_cls.from_config(tcfg), vae_cls.from_config(vcfg)


def _first_block():
    from diffusers import FirstBlockCacheConfig
    return FirstBlockCacheConfig(threshold=0.05)   # diffusers' default: steps whose first block barely moves reuse


def _taylorseer():
    from diffusers import TaylorSeerCacheConfig
    # diffusers' default patterns ("^blocks.*attn", fullmatch) name no module of Wan's or LTX's blocks (attn1,
    # attn2): their attention and feed-forward outputs are named here, predicted between full steps
    return TaylorSeerCacheConfig(cache_interval=5, disable_cache_before_step=3, max_order=1, taylor_factors_dtype=None,
                                 cache_identifiers=[r"^(transformer_)?blocks\.\d+\.(attn1|attn2|ff|ffn)$"])


CACHES = {"first-block": _first_block, "taylorseer": _taylorseer}


class PerPlan:
    """Values computed once per plan from a tensor the sampler passes unchanged at every step (the gate).

    Keyed by the tensor's storage, offset, shape, strides, version and any extra key; an entry holds the
    tensor itself, so its memory cannot be reused by another plan's tensor while the entry lives. A few
    entries: guidance alternates the conditional and unconditional gates.
    """

    def __init__(self, size: int = 4):
        self.size, self.entries = size, []

    def get(self, x: torch.Tensor, compute, *extra):
        key = (x.data_ptr(), tuple(x.shape), x.stride(), x._version, x.dtype, x.device, extra)
        for k, _held, value in self.entries:
            if k == key:
                return value
        value = compute()
        self.entries = [*self.entries[-(self.size - 1):], (key, x, value)]
        return value


class DiffusersParts:
    """Placement of a pipeline's parts; subclasses set `normalize` for their VAE's latent statistics."""

    def _place_parts(self, transformer, vae, text_encoder, tokenizer, scheduler_config: dict, device, dtype,
                     memory=None, offload: bool = False, vae_tiling: bool = False, vae_slicing: bool = False):
        """The parts in the dtype, on the device or (with an offload setting) on the CPU until their hooks are
        installed by `_install_memory`. memory: a setting as engine.backends.memory.parse reads it; the
        older offload / vae_tiling / vae_slicing flags add model offload and the VAE options to it."""
        from engine.backends import memory as mem
        self.device, self.dtype = torch.device(device), dtype
        m = mem.parse(memory, self.name, self.device)
        self.memory = mem.Memory("model" if offload and m.offload == "none" else m.offload, m.fp8,
                                 m.tiling or vae_tiling, m.slicing or vae_slicing)
        self.home = self.device if self.memory.offload == "none" else torch.device("cpu")  # where weights rest
        # cast only when needed: diffusers warns on a dtype cast of a loaded model
        self.transformer = self._place(transformer, dtype, self.home).eval()
        self.vae = self._place(vae, dtype, self.home).eval()
        self.text_encoder = text_encoder.to(self.home).eval()
        self.tokenizer = tokenizer
        self.scheduler_config = dict(scheduler_config)

    def _install_memory(self) -> None:
        """The memory setting's diffusers hooks, once every part (transformer_2 too) is in place."""
        from engine.backends import memory as mem
        mem.install(self, self.memory)

    @staticmethod
    def _place(model, dtype, device):
        return model.to(device) if model.dtype == dtype else model.to(device, dtype)

    # ------------------------------------------------------------------ caches (issue 22: the "fast" preset)
    @property
    def experts(self) -> list:
        """The transformers the backend runs: one, or Wan 2.2 A14B's high-noise and low-noise experts."""
        return [m for m in (self.transformer, getattr(self, "transformer_2", None)) if m is not None]

    @contextmanager
    def cached(self, kind: str):
        """diffusers' cache hook `kind` (CACHES) on every expert for a job, removed after whatever happens."""
        if kind == "none":
            yield
            return
        for m in self.experts:
            m.enable_cache(CACHES[kind]())
        self.cache_kind = kind
        try:
            yield
        finally:
            self.cache_kind = None
            for m in self.experts:
                m.disable_cache()

    def run(self, model, gate: torch.Tensor, **inputs):
        """model(**inputs)[0]; with a cache on, inside a cache context a plan's branch keeps (its gate tells
        the conditional call from the unconditional one, as WanPipeline's "cond" / "uncond")."""
        if getattr(self, "cache_kind", None) is None:
            return model(**inputs, return_dict=False)[0]
        name = self.memo.get(gate, lambda: f"branch{id(gate)}", "cache context")
        with model.cache_context(name):
            return model(**inputs, return_dict=False)[0]

    def run_outputs(self, model, gate: torch.Tensor, **inputs) -> tuple:
        """Every output of model(**inputs) (LTX-2's video and audio), in the cache context `run` uses."""
        if getattr(self, "cache_kind", None) is None:
            return model(**inputs, return_dict=False)
        name = self.memo.get(gate, lambda: f"branch{id(gate)}", "cache context")
        with model.cache_context(name):
            return model(**inputs, return_dict=False)

    # ------------------------------------------------------------------ LoRA (issue 22)
    def pipeline_view(self):
        """A diffusers pipeline around this backend's own modules (shared, not copied): its LoRA loader
        (format conversion included) then works on them. Subclasses build their pipeline class."""
        raise NotImplementedError

    @contextmanager
    def loras(self, loras):
        """With the preset's LoRAs (engine.presets.Lora) loaded and weighted, each checked against the model;
        unloaded after, whatever happens, which restores the model's weights exactly."""
        pipe = self.pipeline_view()
        names = []
        try:
            for i, lora in enumerate(loras):
                sd = check_lora(pipe, lora, self.name)
                kw = {"load_into_transformer_2": True} if lora.expert == "transformer_2" else {}
                pipe.load_lora_weights(sd, adapter_name=f"cinepatch_{i}", **kw)
                names.append(f"cinepatch_{i}")
            pipe.set_adapters(names, [lora.scale for lora in loras])
            yield
        finally:
            if names:
                pipe.unload_lora_weights()

    @torch.no_grad()
    def encode_video(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, N, H, W) in [-1, 1], N = 1 + k*tf -> normalised latents (B, C, F, H/sf, W/sf).

        The posterior's mode, not a sample: injected media encode the same way every time.
        """
        x = pixels.to(self.device, self.dtype)
        z = self.vae.encode(x).latent_dist.mode()
        return self.normalize(z).float()


def check_lora(pipe, lora, backend: str) -> dict:
    """The LoRA file's state dict in diffusers' naming, or a one-line InputError naming the file when it cannot
    be read or was made for another model (a module it adapts is missing here, or has other sizes)."""
    try:
        sd = type(pipe).lora_state_dict(str(lora.path))
    except Exception as e:  # safetensors / key-conversion errors of a file that is no LoRA for this pipeline
        first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        raise InputError(f"lora: {lora.path} could not be read as a LoRA for the {backend} backend ({first[:160]})") \
            from None
    sd = sd[0] if isinstance(sd, tuple) else sd
    model = getattr(pipe, lora.expert, None)
    if model is None:
        raise InputError(f"lora: {lora.path} is for {lora.expert}, which the {backend} model does not have")
    pairs = [k for k in sd if ".lora_A." in k or ".lora_B." in k]
    if not pairs:
        raise InputError(f"lora: {lora.path} holds no LoRA weights (no lora_A / lora_B tensors)")
    for key in pairs:
        path = key.split(".lora_")[0].removeprefix("transformer.")
        try:
            mod = model.get_submodule(path)
        except AttributeError:
            raise InputError(f"lora: {lora.path} is not a LoRA for the {backend} model: it adapts {path}, "
                             f"which that model does not have") from None
        a_side = ".lora_A." in key
        want = getattr(mod, "in_features" if a_side else "out_features", None)
        got = sd[key].shape[1 if a_side else 0]
        if want is not None and got != want:
            raise InputError(f"lora: {lora.path} was made for another base model than the {backend} model: "
                             f"{path} has {want} {'inputs' if a_side else 'outputs'} here, {got} in the LoRA")
    return sd
