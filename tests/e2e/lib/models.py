"""Small Llama-shaped checkpoints for the end-to-end tests, deterministic from a seed."""
import json
import os

import numpy as np

import st

DTYPE_NAMES = {"bf16": "BF16", "f16": "F16", "f32": "F32", "BF16": "BF16", "F16": "F16", "F32": "F32"}


def llama_shapes(num_layers=2, hidden=64, intermediate=128, vocab=256, kv_hidden=None):
    """[(name, shape)] in the usual Hugging Face order. k/v project to kv_hidden (grouped-query
    attention; default hidden // 2) so that the tensors do not all share one shape."""
    kv = kv_hidden if kv_hidden is not None else hidden // 2
    out = [("model.embed_tokens.weight", (vocab, hidden))]
    for i in range(num_layers):
        p = "model.layers.%d." % i
        out += [
            (p + "self_attn.q_proj.weight", (hidden, hidden)),
            (p + "self_attn.k_proj.weight", (kv, hidden)),
            (p + "self_attn.v_proj.weight", (kv, hidden)),
            (p + "self_attn.o_proj.weight", (hidden, hidden)),
            (p + "mlp.gate_proj.weight", (intermediate, hidden)),
            (p + "mlp.up_proj.weight", (intermediate, hidden)),
            (p + "mlp.down_proj.weight", (hidden, intermediate)),
            (p + "input_layernorm.weight", (hidden,)),
            (p + "post_attention_layernorm.weight", (hidden,)),
        ]
    out += [("model.norm.weight", (hidden,)), ("lm_head.weight", (vocab, hidden))]
    return out


def _base_values(rng, name, shape):
    if name.endswith("norm.weight"):
        return (1.0 + 0.1 * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)
    fan_in = shape[-1]
    return (rng.standard_normal(shape, dtype=np.float32) * np.float32(1.0 / np.sqrt(fan_in))).astype(np.float32)


def _as_f32(value):
    if isinstance(value, tuple):
        return st.to_f32(*value)
    return np.asarray(value, dtype=np.float32)


def split_shards(names, shards):
    """Splits an ordered name list into `shards` consecutive, nearly equal groups."""
    shards = max(1, min(shards, len(names)))
    per, extra = divmod(len(names), shards)
    groups, i = [], 0
    for s in range(shards):
        n = per + (1 if s < extra else 0)
        groups.append(names[i:i + n])
        i += n
    return groups


def write_model_dir(directory, tensors, shards=1, config=None, tokenizer=True, metadata=None):
    """tensors: {name: (dtype_str, ndarray)} in order. Writes model.safetensors, or shards and an
    index, plus config.json / tokenizer files when given."""
    os.makedirs(directory, exist_ok=True)
    names = list(tensors)
    if metadata is None:
        metadata = {"format": "pt"}
    if shards <= 1:
        st.write_safetensors(os.path.join(directory, "model.safetensors"), tensors, metadata)
    else:
        groups = split_shards(names, shards)
        weight_map, total = {}, 0
        for i, group in enumerate(groups):
            fname = "model-%05d-of-%05d.safetensors" % (i + 1, len(groups))
            st.write_safetensors(os.path.join(directory, fname), [(n, tensors[n]) for n in group], metadata)
            for n in group:
                weight_map[n] = fname
                total += np.asarray(tensors[n][1]).nbytes
        with open(os.path.join(directory, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    if config is not None:
        with open(os.path.join(directory, "config.json"), "w") as f:
            json.dump(config, f, indent=2)
    if tokenizer:
        with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
            json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>",
                       "eos_token": "</s>", "model_max_length": 2048}, f, indent=2)
        with open(os.path.join(directory, "tokenizer.json"), "w") as f:
            json.dump({"version": "1.0", "model": {"type": "BPE", "vocab": {"<s>": 0, "</s>": 1}, "merges": []}},
                      f, indent=2)
        with open(os.path.join(directory, "generation_config.json"), "w") as f:
            json.dump({"bos_token_id": 0, "eos_token_id": 1}, f, indent=2)


def llama_config(num_layers, hidden, intermediate, vocab, dtype):
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "num_hidden_layers": num_layers,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": vocab,
        "rms_norm_eps": 1e-5,
        "torch_dtype": {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}[dtype],
    }


def make_llama(directory, dtype, seed, num_layers=2, hidden=64, intermediate=128, vocab=256,
               shards=1, base=None, noise=0.02, config=True, extra=None, drop=(), reshape=None):
    """Writes a small Llama-shaped checkpoint into `directory` and returns {name: float32 array}
    holding exactly the stored values (widened to f32).

    dtype: "bf16" | "f16" | "f32". base: {name: f32 array or (dtype, array)}; when given the
    model is base + noise * N(0, 1) (a fine-tune). config: True writes a config.json with
    num_hidden_layers, False none, a dict is written as is. extra: {name: (dtype, array)}
    appended after the Llama tensors and stored as given (integer buffers ...). drop: tensor
    names left out. reshape: {name: shape} giving a tensor another shape (error tests)."""
    dt = DTYPE_NAMES[dtype]
    shapes = llama_shapes(num_layers, hidden, intermediate, vocab)
    reshape = reshape or {}
    tensors, values = {}, {}
    for index, (name, shape) in enumerate(shapes):
        if name in drop:
            continue
        shape = tuple(reshape.get(name, shape))
        rng = np.random.default_rng([seed, index])
        if base is not None and name in base and name not in reshape:
            b = _as_f32(base[name])
            v = (b + np.float32(noise) * rng.standard_normal(b.shape, dtype=np.float32)).astype(np.float32)
        else:
            v = _base_values(rng, name, shape)
        stored = st.from_f32(dt, v)
        tensors[name] = (dt, stored)
        values[name] = st.to_f32(dt, stored)
    for name, (edt, arr) in (extra or {}).items():
        tensors[name] = (edt, np.asarray(arr))
        values[name] = np.asarray(arr)
    if config is True:
        cfg = llama_config(num_layers, hidden, intermediate, vocab, dt)
    elif isinstance(config, dict):
        cfg = config
    else:
        cfg = None
    write_model_dir(directory, tensors, shards=shards, config=cfg)
    return values
