"""PEFT-format LoRA adapters for the end-to-end tests, written with numpy, deterministic from a
seed: adapter_config.json + adapter_model.safetensors as PEFT's save_pretrained writes them
(keys base_model.model.<module>.lora_A.weight r x in and .lora_B.weight out x r, embeddings'
lora_embedding_A/B, modules_to_save saved under the module's own name), with the float32 delta
each adapter adds to a tensor of the model it is on: transpose(B @ A, fan_in_fan_out) * scale,
scale = alpha / r (or alpha / sqrt(r) with use_rslora), PEFT's get_delta_weight."""
import json
import math
import os
import re

import numpy as np

import models
import st

F = np.float32
PREFIX = "base_model.model."
LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def pattern_key(keys, module):
    """PEFT's get_pattern_key: the first key k with re.match(rf"(.*\\.)?({k})$", module)."""
    for k in keys:
        if re.match(r"(.*\.)?(%s)$" % k, module):
            return k
    return None


def scale_of(alpha, r, rslora):
    return F(alpha / math.sqrt(r)) if rslora else F(alpha / r)


def write_adapter(directory, base, r=8, alpha=16, dtype="bf16", targets=LINEAR, rslora=False,
                  rank_pattern=None, alpha_pattern=None, fan_in_fan_out=False,
                  modules_to_save=(), embedding=None, infix=False, seed=0, config_extra=None,
                  magnitude=0.05):
    """base: {tensor name: f32 array} of the model the adapter is on. targets: module name
    suffixes (q_proj ...) whose `<module>.weight` gets a LoRA pair. embedding: a module name
    (model.embed_tokens) for lora_embedding_A/B. modules_to_save: module names whose weight is
    saved in full (base + noise). infix: keys with the `.default` adapter name. Returns
    {tensor name: f32 delta} for every tensor the adapter changes."""
    os.makedirs(directory, exist_ok=True)
    dt = models.DTYPE_NAMES[dtype]
    rank_pattern = rank_pattern or {}
    alpha_pattern = alpha_pattern or {}
    tensors, deltas = {}, {}
    a_key = ".lora_A.default.weight" if infix else ".lora_A.weight"
    b_key = ".lora_B.default.weight" if infix else ".lora_B.weight"
    for index, name in enumerate(base):
        if not name.endswith(".weight"):
            continue
        module = name[:-len(".weight")]
        rng = np.random.default_rng([seed, index])
        shape = base[name].shape
        if module.split(".")[-1] in targets and len(shape) == 2:
            rk = pattern_key(list(rank_pattern), module)
            ak = pattern_key(list(alpha_pattern), module)
            rr = rank_pattern[rk] if rk is not None else r
            aa = alpha_pattern[ak] if ak is not None else alpha
            rows, cols = (shape[1], shape[0]) if fan_in_fan_out else shape
            a = st.from_f32(dt, (rng.standard_normal((rr, cols), dtype=F) * F(magnitude)).astype(F))
            b = st.from_f32(dt, (rng.standard_normal((rows, rr), dtype=F) * F(magnitude)).astype(F))
            tensors[PREFIX + module + a_key] = (dt, a)
            tensors[PREFIX + module + b_key] = (dt, b)
            d = (st.to_f32(dt, b) @ st.to_f32(dt, a)) * scale_of(aa, rr, rslora)
            deltas[name] = (d.T if fan_in_fan_out else d).astype(F)
        elif module == embedding:
            vocab, dim = shape
            a = st.from_f32(dt, (rng.standard_normal((r, vocab), dtype=F) * F(magnitude)).astype(F))
            b = st.from_f32(dt, (rng.standard_normal((dim, r), dtype=F) * F(magnitude)).astype(F))
            suffix = ".default" if infix else ""
            tensors[PREFIX + module + ".lora_embedding_A" + suffix] = (dt, a)
            tensors[PREFIX + module + ".lora_embedding_B" + suffix] = (dt, b)
            deltas[name] = ((st.to_f32(dt, b) @ st.to_f32(dt, a)).T * scale_of(alpha, r, rslora)).astype(F)
        elif module in modules_to_save:
            saved = st.from_f32(dt, (base[name] + F(0.02) * rng.standard_normal(shape, dtype=F)).astype(F))
            tensors[PREFIX + name] = (dt, saved)
            deltas[name] = (st.to_f32(dt, saved) - base[name]).astype(F)
    st.write_safetensors(os.path.join(directory, "adapter_model.safetensors"), tensors)
    config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": "models/base",
        "r": r, "lora_alpha": alpha, "lora_dropout": 0.0, "bias": "none",
        "target_modules": list(targets) + ([embedding.split(".")[-1]] if embedding else []),
        "use_rslora": rslora, "use_dora": False, "fan_in_fan_out": fan_in_fan_out,
        "rank_pattern": rank_pattern, "alpha_pattern": alpha_pattern,
        "modules_to_save": [m.split(".")[-1] for m in modules_to_save] or None,
        "inference_mode": True,
    }
    config.update(config_extra or {})
    with open(os.path.join(directory, "adapter_config.json"), "w") as f:
        json.dump(config, f, indent=2)
    return deltas


def delta_of(deltas, base, name):
    """The adapter's f32 delta of tensor `name` (0 where it does not change it)."""
    return deltas.get(name, np.zeros_like(base[name], dtype=F))
