"""Load GGUF files (llama.cpp's format) by converting them once into a Hugging Face folder.

    model.gguf --read_gguf--> (LlamaConfig dict, HF Llama state dict, fast tokenizer)
        --convert_gguf--> $LOOKINGGLASS_HOME/gguf/<stem>-<sha256[:12]>/   (once)
        --from_pretrained(folder)--> the ordinary local-folder path (Llama converter)

`HookedTransformer.from_pretrained("model.gguf")` (or a folder holding exactly one .gguf
file, or a registered name such as "smollm2-135m") goes through `converted_folder`: the
first load dequantizes every tensor to float32 and writes `model.safetensors`,
`config.json` and the tokenizer files; later loads of the same file (same content hash)
read that folder directly. The folder is written under a temporary name and renamed
into place, so a crash never leaves a half-written cache that a later load would use.

What the conversion undoes: GGUF stores each weight with its dimensions listed innermost
first (numpy shape `[d_out, d_in]`, as in `nn.Linear`), quantized in blocks along
`d_in`; and llama.cpp's converter permutes the rows of `attn_q`/`attn_k` (per head,
from rotate-half pairs to interleaved pairs), which `unpermute_qk` reverses. Only the
"llama" architecture is supported (Llama, SmolLM, Mistral-style files).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
import transformers
from jaxtyping import Float
from torch import Tensor

from lookingglass.errors import CheckpointError, UnsupportedArchitectureError

SUFFIX = ".gguf"
CACHE_KEY = "lookingglass_gguf"  # provenance block written into the cache's config.json
SUPPORTED_TYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1")
# GGUF tensor name -> Hugging Face Llama's; "{i}" is the block index.
GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
BLOCK_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
    **{
        f"attn_{p}.{kind}": f"self_attn.{p}_proj.{kind}"
        for p in "qkv"
        for kind in ("weight", "bias")
    },
}
_BLOCK = re.compile(r"blk\.(\d+)\.(.+)")


# ---------------------------------------------------------------------------- reading
def read_metadata(reader: Any) -> dict[str, Any]:
    """Every metadata key of a `gguf.GGUFReader` with its value (arrays as lists)."""
    return {key: field.contents() for key, field in reader.fields.items()}


def config_from_gguf(metadata: Mapping[str, Any], tensor_names: set[str]) -> dict[str, Any]:
    """A Hugging Face `LlamaConfig` dict (as `config.json` holds) from GGUF metadata.

    Raises:
        UnsupportedArchitectureError: `general.architecture` is not "llama".
        CheckpointError: a required `llama.*` key is missing, or rope scaling is set.
    """
    arch = metadata.get("general.architecture")
    if arch != "llama":
        raise UnsupportedArchitectureError(
            f"GGUF architecture {arch!r} is not supported; supported: 'llama' (Llama, "
            "SmolLM, Mistral-style files). Other models load from a Hugging Face folder."
        )

    def key(name: str, default: Any = None) -> Any:
        value = metadata.get(f"llama.{name}", default)
        if value is None:
            raise CheckpointError(f"The GGUF metadata has no 'llama.{name}'.")
        return value

    scaling = metadata.get("llama.rope.scaling.type", "none")
    if scaling != "none" or "rope_freqs.weight" in tensor_names:
        raise CheckpointError(
            f"GGUF rope scaling ({scaling!r}, rope_freqs) is not supported; only plain "
            "rotary positions (Llama 1/2, SmolLM) load from GGUF."
        )
    n_heads, d_model = key("attention.head_count"), key("embedding_length")
    d_head = key("attention.key_length", d_model // n_heads)
    if key("rope.dimension_count", d_head) != d_head:
        raise CheckpointError(
            f"GGUF rotary dimension {key('rope.dimension_count')} differs from the head size "
            f"{d_head}; partial rotary embeddings are not supported for Llama files."
        )
    tokens = metadata.get("tokenizer.ggml.tokens")
    return dict(
        architectures=["LlamaForCausalLM"],
        model_type="llama",
        hidden_size=d_model,
        intermediate_size=key("feed_forward_length"),
        num_hidden_layers=key("block_count"),
        num_attention_heads=n_heads,
        num_key_value_heads=key("attention.head_count_kv", n_heads),
        head_dim=d_head,
        max_position_embeddings=key("context_length"),
        rms_norm_eps=key("attention.layer_norm_rms_epsilon"),
        rope_parameters={"rope_type": "default", "rope_theta": key("rope.freq_base", 10000.0)},
        vocab_size=key("vocab_size", len(tokens) if tokens is not None else None),
        hidden_act="silu",
        attention_bias="blk.0.attn_q.bias" in tensor_names,
        mlp_bias=False,
        # llama.cpp writes `output.weight` only when it is not the embedding
        tie_word_embeddings="output.weight" not in tensor_names,
        bos_token_id=metadata.get("tokenizer.ggml.bos_token_id"),
        eos_token_id=metadata.get("tokenizer.ggml.eos_token_id"),
        pad_token_id=metadata.get("tokenizer.ggml.padding_token_id"),
    )


def hf_name(gguf_name: str) -> str:
    """The Hugging Face Llama name of a GGUF tensor name (`blk.3.attn_q.weight` ->
    `model.layers.3.self_attn.q_proj.weight`).

    Raises:
        CheckpointError: a tensor Llama has no place for (named).
    """
    if gguf_name in GLOBAL_NAMES:
        return GLOBAL_NAMES[gguf_name]
    match = _BLOCK.fullmatch(gguf_name)
    if match is None or match[2] not in BLOCK_NAMES:
        raise CheckpointError(
            f"GGUF tensor {gguf_name!r} has no counterpart in a Llama model; the file is "
            "not a plain Llama checkpoint."
        )
    return f"model.layers.{match[1]}.{BLOCK_NAMES[match[2]]}"


def dequantize(tensor: Any) -> Float[Tensor, "..."]:
    """A `gguf.ReaderTensor` as a float32 tensor in numpy order (`[d_out, d_in]`).

    Raises:
        CheckpointError: a tensor type other than `SUPPORTED_TYPES` (naming both).
    """
    import gguf

    kind = tensor.tensor_type.name
    if kind not in SUPPORTED_TYPES:
        raise CheckpointError(
            f"GGUF tensor {tensor.name!r} has type {kind}, which lookingglass does not "
            f"dequantize; supported: {', '.join(SUPPORTED_TYPES)}. Re-quantize the model "
            "with one of these (llama.cpp's llama-quantize) or load a Hugging Face folder."
        )
    values = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
    shape = tuple(int(n) for n in reversed(tensor.shape))
    return torch.from_numpy(np.array(values, dtype=np.float32).reshape(shape))


def unpermute_qk(weight: Float[Tensor, "rows ..."], n_heads: int) -> Float[Tensor, "rows ..."]:
    """Undo llama.cpp's permutation of a q or k projection's rows (`n_heads`: the
    projection's own head count, the key/value heads for k).

    llama.cpp rotates interleaved pairs (0,1), (2,3), ... of each head, Hugging Face
    rotate-half pairs (i, i + d_head/2); its converter reorders each head's rows from
    `[2, d_head/2]` to `[d_head/2, 2]`. This reorders them back.
    """
    rows = weight.shape[0]
    half = rows // n_heads // 2
    heads = weight.reshape(n_heads, half, 2, *weight.shape[1:])
    return heads.transpose(1, 2).reshape(weight.shape)


def read_gguf(
    path: str | Path, progress: bool = False
) -> tuple[dict[str, Any], dict[str, Tensor], transformers.PreTrainedTokenizerFast]:
    """Read a GGUF file as a Hugging Face Llama checkpoint: `(config dict, state dict,
    tokenizer)`, every tensor dequantized to float32 and q/k rows in Hugging Face order.

    Raises:
        CheckpointError: an unreadable file, an unsupported tensor type or tensor name.
        UnsupportedArchitectureError: not a "llama" file.
    """
    import gguf
    from tqdm.auto import tqdm

    from lookingglass.loading.gguf_tokenizer import tokenizer_from_gguf

    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as error:  # the reader raises several types for a bad file
        raise CheckpointError(f"Could not read GGUF file {path}: {error}.") from error
    metadata = read_metadata(reader)
    config = config_from_gguf(metadata, {t.name for t in reader.tensors})
    heads = {"q": config["num_attention_heads"], "k": config["num_key_value_heads"]}
    sd: dict[str, Tensor] = {}
    bar = tqdm(reader.tensors, desc=f"Converting {Path(path).name}", disable=not progress)
    for tensor in bar:
        name = hf_name(tensor.name)
        value = dequantize(tensor)
        projection = re.search(r"\.([qk])_proj\.", name)
        if projection is not None:
            value = unpermute_qk(value, heads[projection[1]])
        sd[name] = value.contiguous()
    return config, sd, tokenizer_from_gguf(metadata)


# ------------------------------------------------------------------------------ cache
def gguf_home() -> Path:
    """Where converted GGUF files are kept: `$LOOKINGGLASS_HOME/gguf` (default
    `~/.cache/lookingglass/gguf`)."""
    home = os.environ.get("LOOKINGGLASS_HOME") or "~/.cache/lookingglass"
    return Path(home).expanduser() / "gguf"


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes (0.1 s for 100 MB)."""
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def cache_folder(path: str | Path, sha256: str | None = None) -> Path:
    """The folder `converted_folder` keeps `path`'s conversion in (it may not exist yet)."""
    sha256 = sha256 or file_sha256(path)
    return gguf_home() / f"{Path(path).stem}-{sha256[:12]}"


def is_converted(folder: Path, sha256: str) -> bool:
    """Whether `folder` is a complete conversion of the file with this content hash."""
    from lookingglass.loading.pretrained import CONFIG, SAFETENSORS

    try:
        record = json.loads((folder / CONFIG).read_text())[CACHE_KEY]
        weights = (folder / SAFETENSORS).stat().st_size
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return record.get("sha256") == sha256 and record.get("weights_bytes") == weights


def convert_gguf(
    path: str | Path, folder: str | Path, progress: bool = True, sha256: str | None = None
) -> Path:
    """Write `path` as a Hugging Face Llama folder (config.json, model.safetensors in
    float32, tokenizer files) at `folder`, atomically (temporary folder, then rename).
    `sha256`: the file's content hash, when the caller has it already."""
    from lookingglass.loading.pretrained import CONFIG, SAFETENSORS, atomic_folder

    path = Path(path)
    sha256 = sha256 or file_sha256(path)
    config, sd, tokenizer = read_gguf(path, progress=progress)
    folder = Path(folder)
    if folder.exists() and not is_converted(folder, sha256):
        shutil.rmtree(folder)  # an incomplete or stale conversion: ours to replace
    with atomic_folder(folder) as tmp:
        safetensors.torch.save_file(sd, tmp / SAFETENSORS, metadata={"format": "pt"})
        tokenizer.save_pretrained(tmp)
        hf_config = transformers.LlamaConfig(**config).to_dict()
        hf_config[CACHE_KEY] = {
            "source": str(path.resolve()),
            "sha256": sha256,
            "weights_bytes": (tmp / SAFETENSORS).stat().st_size,
            "add_bos_token": bool(getattr(tokenizer, "add_bos_token", False)),
        }
        (tmp / CONFIG).write_text(json.dumps(hf_config, indent=2) + "\n")
    return folder


def converted_folder(path: str | Path, progress: bool = True) -> Path:
    """The Hugging Face folder converted from the GGUF file `path`: the cached one when
    it is complete and of the same content, else converted now (`convert_gguf`)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"GGUF file {path} does not exist.")
    sha256 = file_sha256(path)
    folder = cache_folder(path, sha256)
    if is_converted(folder, sha256):
        return folder
    return convert_gguf(path, folder, progress=progress, sha256=sha256)


def gguf_file_in(folder: Path) -> Path | None:
    """The one `.gguf` file of a folder that has no `config.json`, else None.

    Raises:
        CheckpointError: the folder holds several `.gguf` files (listed).
    """
    if (folder / "config.json").is_file():
        return None
    files = sorted(folder.glob(f"*{SUFFIX}"))
    if len(files) > 1:
        raise CheckpointError(
            f"{folder} holds several GGUF files ({', '.join(f.name for f in files)}); pass "
            "the path of the one to load."
        )
    return files[0] if files else None


def default_prepend_bos(hf_config: Mapping[str, Any]) -> bool | None:
    """For a converted GGUF folder's config: whether its tokenizer adds BOS (llama.cpp's
    `tokenizer.ggml.add_bos_token`); None for any other checkpoint."""
    record = hf_config.get(CACHE_KEY)
    return record.get("add_bos_token") if isinstance(record, Mapping) else None
