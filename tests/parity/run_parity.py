#!/usr/bin/env python3
"""mergekit parity harness for mergec.

Generates small synthetic Llama checkpoints (a base and three fine-tunes, bf16), then for every
merge method writes a mergekit YAML and the equivalent mergec recipe, runs both, and compares
every output tensor bit for bit (bf16 ulp distance). Random methods (DARE, DELLA) cannot match
bit for bit (torch's RNG against mergec's counter-based one), so they are compared
statistically: keep rate against density and the rescale factor, from single-model runs.

Run it with the parity venv's python (tests/parity/setup_venv.sh makes it):
    .venv-parity/bin/python tests/parity/run_parity.py [--report docs/parity.md]
tests/parity/run_parity.sh does both. Nothing here is part of the default test run.
"""

import argparse
import concurrent.futures as futures
import datetime
import hashlib
import importlib.metadata as md
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent

# ----------------------------------------------------------------------------- checkpoints

DIMS = dict(hidden=64, inter=128, layers=2, heads=4, kv_heads=2, vocab=256)
BASE_SEED = 1234
# Fine-tune name: (seed, rel) = base + N(0, (rel * rms(base tensor))^2). The scales are large
# enough that slerp(a, b) takes its spherical branch (cos(a, b) ~ 0.997 < 0.9995).
FINETUNES = {"a": (11, 0.04), "b": (12, 0.06), "c": (13, 0.08)}
MODEL_NAMES = ["base", "a", "b", "c"]


def llama_shapes():
    h, i, v = DIMS["hidden"], DIMS["inter"], DIMS["vocab"]
    head_dim = h // DIMS["heads"]
    kv = DIMS["kv_heads"] * head_dim
    shapes = [("model.embed_tokens.weight", (v, h))]
    for n in range(DIMS["layers"]):
        p = f"model.layers.{n}."
        shapes += [
            (p + "input_layernorm.weight", (h,)),
            (p + "self_attn.q_proj.weight", (h, h)),
            (p + "self_attn.k_proj.weight", (kv, h)),
            (p + "self_attn.v_proj.weight", (kv, h)),
            (p + "self_attn.o_proj.weight", (h, h)),
            (p + "post_attention_layernorm.weight", (h,)),
            (p + "mlp.gate_proj.weight", (i, h)),
            (p + "mlp.up_proj.weight", (i, h)),
            (p + "mlp.down_proj.weight", (h, i)),
        ]
    shapes += [("model.norm.weight", (h,)), ("lm_head.weight", (v, h))]
    return shapes


def llama_config():
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": DIMS["hidden"],
        "intermediate_size": DIMS["inter"],
        "num_hidden_layers": DIMS["layers"],
        "num_attention_heads": DIMS["heads"],
        "num_key_value_heads": DIMS["kv_heads"],
        "vocab_size": DIMS["vocab"],
        "max_position_embeddings": 128,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "bos_token_id": 1,
        "eos_token_id": 2,
    }


def make_models(models_dir: Path):
    """Writes base, a, b, c under models_dir (deterministic: same bytes every run)."""
    gen = torch.Generator().manual_seed(BASE_SEED)
    base = {}
    for name, shape in llama_shapes():
        if name.endswith("norm.weight"):
            t = 1.0 + 0.05 * torch.randn(shape, generator=gen)
        else:
            t = 0.02 * torch.randn(shape, generator=gen)
        base[name] = t.to(torch.bfloat16)
    tensors = {"base": base}
    for m, (seed, rel) in FINETUNES.items():
        g = torch.Generator().manual_seed(seed)
        out = {}
        for name, shape in llama_shapes():
            b = base[name].float()
            rms = b.square().mean().sqrt()
            out[name] = (b + rel * rms * torch.randn(shape, generator=g)).to(torch.bfloat16)
        tensors[m] = out
    for m, ts in tensors.items():
        d = models_dir / m
        d.mkdir(parents=True, exist_ok=True)
        save_file(ts, str(d / "model.safetensors"), metadata={"format": "pt"})
        (d / "config.json").write_text(json.dumps(llama_config(), indent=2) + "\n")
    return tensors


# ----------------------------------------------------------------------------- methods

W = [0.5, 0.3, 0.2]          # per-model weights (a, b, c)
DENS = [0.3, 0.5, 0.2]       # per-model densities (a, b, c)
FT = ["a", "b", "c"]
TVS = "[tv(a), tv(b), tv(c)]"
MODELS = "[a, b, c]"


def fmt_list(xs):
    return "[" + ", ".join(repr(x) for x in xs) + "]"


def per_model(**lists):
    """mergekit per-model parameters: {model: {param: value}} from lists over a, b, c."""
    return {m: {k: v[i] for k, v in lists.items()} for i, m in enumerate(FT)}


def method_table():
    """Each method: mergekit config (merge_method, base, models with parameters, shared
    parameters), the mergec merge expression, and a short description for the table."""
    M = []

    def add(name, mk_method, mc_expr, desc, base="base", models=None, params=None,
            model_params=None, random=False, single=None):
        M.append(dict(name=name, mk_method=mk_method, mc_expr=mc_expr, desc=desc, base=base,
                      models=models if models is not None else list(FT),
                      params=params or {}, model_params=model_params or {},
                      random=random, single=single))

    add("linear", "linear", f"linear({MODELS}, weights = {fmt_list([0.5, 0.3, 0.4])})",
        "linear, w=[.5,.3,.4], normalize", base=None,
        model_params=per_model(weight=[0.5, 0.3, 0.4]))
    add("task_arithmetic", "task_arithmetic",
        f"base + task_arithmetic({TVS}, weights = {fmt_list(W)})",
        "task_arithmetic, w=[.5,.3,.2]", model_params=per_model(weight=W))
    add("ties", "ties",
        f"base + ties({TVS}, weights = {fmt_list(W)}, density = {fmt_list(DENS)})",
        "ties, w=[.5,.3,.2], density=[.3,.5,.2]", model_params=per_model(weight=W, density=DENS))
    add("breadcrumbs", "breadcrumbs",
        f"base + breadcrumbs({TVS}, weights = {fmt_list(W)}, density = {fmt_list(DENS)}, "
        "gamma = 0.05)",
        "breadcrumbs, w, density, gamma=.05",
        model_params=per_model(weight=W, density=DENS, gamma=[0.05] * 3))
    add("breadcrumbs_ties", "breadcrumbs_ties",
        f"base + breadcrumbs_ties({TVS}, weights = {fmt_list(W)}, density = {fmt_list(DENS)}, "
        "gamma = 0.05)",
        "breadcrumbs_ties, w, density, gamma=.05",
        model_params=per_model(weight=W, density=DENS, gamma=[0.05] * 3))
    add("sce", "sce", f"base + sce({TVS}, select_topk = 0.5)", "sce, select_topk=.5",
        params={"select_topk": 0.5})
    add("slerp", "slerp", "slerp(a, b, 0.3)", "slerp, base_model=a, models a b, t=.3",
        base="a", models=["a", "b"], params={"t": 0.3})
    add("nuslerp", "nuslerp", "nuslerp(a, b, 0.3)",
        "nuslerp, no base, w a=.7 b=.3 (t=.3)", base=None, models=["a", "b"],
        model_params={"a": {"weight": 0.7}, "b": {"weight": 0.3}})
    add("nuslerp (task vectors)", "nuslerp", "base + nuslerp(tv(a), tv(b), 0.3)",
        "nuslerp, base_model=base, w a=.7 b=.3", models=["a", "b"],
        model_params={"a": {"weight": 0.7}, "b": {"weight": 0.3}})
    add("nuslerp (rows)", "nuslerp", "nuslerp(a, b, 0.3, flatten = false)",
        "nuslerp, no base, w a=.7 b=.3, nuslerp_flatten: false", base=None, models=["a", "b"],
        model_params={"a": {"weight": 0.7}, "b": {"weight": 0.3}},
        params={"nuslerp_flatten": False})
    add("multislerp", "multislerp", f"multislerp({MODELS}, weights = {fmt_list(W)})",
        "multislerp, no base, w=[.5,.3,.2]", base=None, model_params=per_model(weight=W))
    add("multislerp (task vectors)", "multislerp",
        f"base + multislerp({TVS}, weights = {fmt_list(W)})",
        "multislerp, base_model=base, w=[.5,.3,.2]", model_params=per_model(weight=W))
    add("model_stock", "model_stock", f"model_stock(base, {MODELS})", "model_stock, base_model=base")
    add("model_stock (filter_wise)", "model_stock",
        f"model_stock(base, {MODELS}, filter_wise = true)",
        "model_stock, filter_wise: true", params={"filter_wise": True})
    add("karcher", "karcher", f"karcher({MODELS}, max_iter = 10, tol = 1e-5)",
        "karcher, no base, max_iter=10, tol=1e-5", base=None,
        params={"max_iter": 10, "tol": 1e-5})
    add("nearswap", "nearswap", "nearswap(base, a, 0.0005)", "nearswap, base_model=base, t=5e-4",
        models=["base", "a"], params={"t": 0.0005})
    add("ram", "ram", f"base + ram({TVS})", "ram, base_model=base, epsilon=1e-5")
    add("ramplus_tl", "ramplus_tl", f"base + ramplus_tl({TVS}, r = 0.3, alpha = 0.5)",
        "ramplus_tl, r=.3, alpha=.5", params={"r": 0.3, "alpha": 0.5})
    add("arcee_fusion", "arcee_fusion", "arcee_fusion(base, a)", "arcee_fusion, base_model=base",
        models=["base", "a"])

    # Random methods: the 3-model run plus single-model runs (one per fine-tune) for statistics.
    def rnd(name, extra_mk, extra_mc, desc, **kw):
        mp = per_model(weight=W, density=DENS, **{k: [v] * 3 for k, v in extra_mk.items()})
        add(name, name,
            f"base + {name}({TVS}, weights = {fmt_list(W)}, density = {fmt_list(DENS)}{extra_mc})",
            desc, model_params=mp, random=True,
            single=[(m, DENS[i], f"base + {name}([tv({m})], density = {DENS[i]}{extra_mc})",
                     {m: {"weight": 1.0, "density": DENS[i], **extra_mk}})
                    for i, m in enumerate(FT)])

    rnd("dare_linear", {}, "", "dare_linear, w, density (rescale)")
    rnd("dare_ties", {}, "", "dare_ties, w, density (rescale)")
    rnd("della", {"epsilon": 0.15}, ", epsilon = 0.15", "della, w, density, epsilon=.15")
    rnd("della_linear", {"epsilon": 0.15}, ", epsilon = 0.15",
        "della_linear, w, density, epsilon=.15")
    return M


# ----------------------------------------------------------------------------- running

def yaml_dump(obj, indent=0):
    """Minimal YAML writer (dicts, lists, scalars); avoids depending on PyYAML's layout."""
    pad = "  " * indent
    lines = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{pad}{k}:")
                lines.append(yaml_dump(v, indent + 1))
            else:
                lines.append(f"{pad}{k}: {yaml_scalar(v)}")
    elif isinstance(obj, list):
        for v in obj:
            if isinstance(v, dict):
                sub = yaml_dump(v, indent + 1).split("\n")
                lines.append(f"{pad}- {sub[0].strip()}")
                lines.extend(sub[1:])
            else:
                lines.append(f"{pad}- {yaml_scalar(v)}")
    return "\n".join(lines)


def yaml_scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, dict) and not v:
        return "{}"
    return json.dumps(str(v))


def mergekit_config(method, models_dir, models, model_params, params, base):
    cfg = {"merge_method": method}
    if base is not None:
        cfg["base_model"] = str(models_dir / base)
    entries = []
    for m in models:
        e = {"model": str(models_dir / m)}
        if model_params.get(m):
            e["parameters"] = model_params[m]
        entries.append(e)
    cfg["models"] = entries
    if params:
        cfg["parameters"] = params
    cfg["dtype"] = "float32"
    cfg["out_dtype"] = "bfloat16"
    return yaml_dump(cfg) + "\n"


def mergec_recipe(models_dir, expr):
    lines = [f'model {m} = "{models_dir / m}"' for m in MODEL_NAMES]
    return "\n".join(lines) + f"\nmerge {expr}\n"


def run_cmd(cmd, log, env=None, timeout=600):
    t0 = time.time()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        rc, out = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        rc, out = 124, f"timed out after {timeout}s\n{e.stdout or ''}{e.stderr or ''}"
    except OSError as e:
        rc, out = 127, str(e)
    log.write_text(" ".join(map(str, cmd)) + "\n" + out)
    return rc, out, time.time() - t0


# Methods whose mergekit implementation picks elements by sorting magnitudes: they also run
# once with mergec's tie order, to tell tie-breaking at a threshold from real differences.
SORTING_METHODS = ("ties", "breadcrumbs", "breadcrumbs_ties", "sce")


MERGEKIT_ARGS = ["--allow-crimes", "--out-shard-size", "1B", "--quiet", "--no-copy-tokenizer",
                 "--no-write-model-card"]


class index_order_ties:
    """While mergekit runs in this process, makes torch.sort / torch.argsort / torch.topk order
    equal keys as mergec does: a descending order lists equal values lowest index first, and an
    ascending order is exactly its reverse (equal values highest index first), so a band cut
    from either end holds the same elements. mergekit calls them with the default
    stable=False, whose order for equal keys is an implementation detail of torch."""

    def __enter__(self):
        self.saved = torch.sort, torch.argsort, torch.topk
        sort = torch.sort

        def tie_sort(input, dim=-1, descending=False, stable=False, **kw):
            if descending:
                return sort(input, dim=dim, descending=True, stable=True)
            n = input.shape[dim]
            v, i = sort(input.flip(dim), dim=dim, descending=False, stable=True)
            return torch.return_types.sort((v, n - 1 - i))

        def tie_argsort(input, dim=-1, descending=False, stable=False, **kw):
            return tie_sort(input, dim=dim, descending=descending).indices

        def tie_topk(input, k, dim=-1, largest=True, sorted=True, **kw):
            v, i = tie_sort(input, dim=dim, descending=largest)
            return torch.return_types.topk((v.narrow(dim, 0, k), i.narrow(dim, 0, k)))

        torch.sort, torch.argsort, torch.topk = tie_sort, tie_argsort, tie_topk

    def __exit__(self, *exc):
        torch.sort, torch.argsort, torch.topk = self.saved


def run_mergekit(job_dir, cfg, seed, cli=False, stable=False):
    """Runs one mergekit merge: by default in this process (mergekit.merge.run_merge with the
    options mergekit-yaml would build; importing torch + transformers costs ~10 s a process),
    or with --mergekit-cli as `mergekit-yaml CFG OUT --allow-crimes --out-shard-size 1B ...`.
    stable=True (in process only) breaks ties in sorts as mergec does (index_order_ties)."""
    tag = "mergekit-stable" if stable else "mergekit"
    yaml_text = cfg.read_text()
    out = job_dir / f"{tag}-out"
    shutil.rmtree(out, ignore_errors=True)
    log = job_dir / f"{tag}.log"
    if cli:
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="", HF_HUB_OFFLINE="1",
                   TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        cmd = [str(VENV_BIN / "mergekit-yaml"), str(cfg), str(out), *MERGEKIT_ARGS,
               "--random-seed", str(seed)]
        rc, text, secs = run_cmd(cmd, log, env=env)
        return dict(ok=rc == 0, out=out, error=last_error(text) if rc else None, secs=secs)
    import traceback

    import yaml
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions

    t0 = time.time()
    try:
        options = MergeOptions(allow_crimes=True, out_shard_size=1_000_000_000, quiet=True,
                               copy_tokenizer=False, write_model_card=False, random_seed=seed)
        options.apply_global_options()
        config = MergeConfiguration.model_validate(yaml.safe_load(yaml_text))
        if stable:
            with index_order_ties():
                run_merge(config, str(out), options=options, config_source=yaml_text)
        else:
            run_merge(config, str(out), options=options, config_source=yaml_text)
        log.write_text("run_merge (in process): ok\n")
        return dict(ok=True, out=out, error=None, secs=time.time() - t0)
    except (Exception, SystemExit) as e:  # report mergekit's own error in the table
        log.write_text("run_merge (in process)\n" + traceback.format_exc())
        msg = f"{type(e).__name__}: {e}".strip().splitlines()[0][:300]
        return dict(ok=False, out=out, error=msg, secs=time.time() - t0)


def write_once(path: Path, text: str):
    """Writes a job's config before any job starts (runs of one job dir share it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def run_mergec(mergec, job_dir, recipe, tag="mergec-out", threads=None):
    out = job_dir / tag
    shutil.rmtree(out, ignore_errors=True)
    cmd = [str(mergec), "run", str(recipe), "-o", str(out), "--quiet"]
    if threads:
        cmd += ["--threads", str(threads)]
    rc, text, secs = run_cmd(cmd, job_dir / f"{tag}.log")
    return dict(ok=rc == 0, out=out, error=first_error(text) if rc else None, secs=secs,
                unavailable=rc != 0 and "unknown function" in text)


def first_error(text):
    for line in text.splitlines():
        if "error" in line:
            return line.strip()
    lines = [l for l in text.splitlines() if l.strip()]
    return lines[0].strip() if lines else "no output"


def last_error(text):
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    for line in reversed(lines):
        if "Error" in line or "error" in line:
            return line[:300]
    return lines[-1][:300] if lines else "no output"


# ----------------------------------------------------------------------------- comparing

def load_dir(d: Path):
    out = {}
    for f in sorted(d.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def bits(t: torch.Tensor) -> np.ndarray:
    assert t.dtype == torch.bfloat16, t.dtype
    return t.contiguous().view(torch.int16).numpy().view(np.uint16).reshape(-1)


def ordered(b: np.ndarray) -> np.ndarray:
    i = b.astype(np.int64)
    return np.where(i & 0x8000, 0x8000 - i, i)   # -0 and +0 both map to 0


def is_nan(b: np.ndarray) -> np.ndarray:
    return (b & 0x7FFF) > 0x7F80


def ulp_dist(x: np.ndarray, y: np.ndarray):
    """bf16 ulp distance (ordered bits); NaN vs NaN is 0, NaN vs number is inf."""
    d = np.abs(ordered(x) - ordered(y)).astype(np.float64)
    nx, ny = is_nan(x), is_nan(y)
    d[nx & ny] = 0
    d[nx ^ ny] = np.inf
    return d


def compare_det(mk: dict, mc: dict, inputs: dict):
    names_mk, names_mc = set(mk), set(mc)
    notes = []
    if names_mk - names_mc:
        notes.append("only in mergekit output: " + ", ".join(sorted(names_mk - names_mc)))
    if names_mc - names_mk:
        notes.append("only in mergec output: " + ", ".join(sorted(names_mc - names_mk)))
    total = exact = within2 = 0
    max_ulp, worst = 0.0, None
    rel_mean_max = rel_max_max = 0.0
    copied = []
    for name in sorted(names_mk & names_mc):
        a, b = mk[name], mc[name]
        if a.shape != b.shape:
            notes.append(f"{name}: shape mergekit {tuple(a.shape)} vs mergec {tuple(b.shape)}")
            continue
        if a.dtype != torch.bfloat16 or b.dtype != torch.bfloat16:
            notes.append(f"{name}: dtype mergekit {a.dtype} vs mergec {b.dtype}, compared "
                         "after rounding to bf16")
            a, b = a.to(torch.bfloat16), b.to(torch.bfloat16)
        xa, xb = bits(a), bits(b)
        d = ulp_dist(xa, xb)
        total += d.size
        exact += int((d == 0).sum())
        within2 += int((d <= 2).sum())
        m = float(d.max()) if d.size else 0.0
        if m > max_ulp:
            max_ulp, worst = m, name
        fa, fb = a.float(), b.float()
        rms = float(fa.square().mean().sqrt()) or 1.0
        diff = (fa - fb).abs()
        rel_mean_max = max(rel_mean_max, float(diff.mean()) / rms)
        rel_max_max = max(rel_max_max, float(diff.max()) / rms)
        # A tensor one side copied from an input while the other computed it.
        src_a = [k for k, t in inputs.items() if torch.equal(t[name], a)]
        src_b = [k for k, t in inputs.items() if torch.equal(t[name], b)]
        if src_a and not src_b:
            copied.append(f"mergekit copied {name} from {'/'.join(src_a)}")
        elif src_b and not src_a:
            copied.append(f"mergec copied {name} from {'/'.join(src_b)}")
    notes += copied
    return dict(max_ulp=max_ulp, worst=worst, pct_exact=100.0 * exact / max(total, 1),
                pct_2ulp=100.0 * within2 / max(total, 1), rel_mean=rel_mean_max,
                rel_max=rel_max_max, elements=total, notes=notes)


def sparsify_stats(out: dict, base: dict, model: dict, density: float):
    """For a single-model run, out = base + s * mask * (model - base):
    keep: share of non-zero deltas that changed the output (element weighted), with the
      per-tensor range; keep_hi / keep_lo: the same for the upper / lower half of each row's
      |delta| ranks (DELLA keeps large deltas more often: density +/- epsilon / 2);
    factor: the per-tensor rescale s (least squares over kept elements), element weighted;
    err_l1 / err_inv: median over tensors of |s / L1 - 1| and |s * density - 1|, where L1 =
      sum|delta| / sum|kept delta| for the mask this run drew (mergekit's rule) and 1/density
      is the paper's DARE rule."""
    kept_n = nz_n = hi_k = hi_n = lo_k = lo_n = 0
    fsum = 0.0
    rates, err_l1, err_inv = [], [], []
    for name in base:
        b = base[name].float()
        d = model[name].float() - b
        o = out[name].float() - b
        rows_d = d.reshape(-1, d.shape[-1]) if d.dim() > 1 else d.reshape(1, -1)
        rows_o = o.reshape(rows_d.shape)
        nz = rows_d != 0
        kept = nz & (rows_o != 0)
        n_nz, n_kept = int(nz.sum()), int(kept.sum())
        if n_nz == 0:
            continue
        kept_n += n_kept
        nz_n += n_nz
        rates.append(n_kept / n_nz)
        rank = rows_d.abs().argsort(dim=1).argsort(dim=1)
        hi = rank >= rows_d.shape[1] // 2
        hi_k += int((kept & hi).sum()); hi_n += int((nz & hi).sum())
        lo_k += int((kept & ~hi).sum()); lo_n += int((nz & ~hi).sum())
        if n_kept:
            dk, ok = rows_d[kept], rows_o[kept]
            f = float((ok * dk).sum() / (dk * dk).sum())
            fsum += f * n_kept
            l1 = float(rows_d.abs().sum() / dk.abs().sum())
            err_l1.append(abs(f / l1 - 1))
            err_inv.append(abs(f * density - 1))
    med = lambda xs: float(np.median(xs)) if xs else float("nan")
    return dict(keep=kept_n / max(nz_n, 1), keep_min=min(rates), keep_max=max(rates),
                keep_hi=hi_k / max(hi_n, 1), keep_lo=lo_k / max(lo_n, 1),
                factor=fsum / max(kept_n, 1), err_l1=med(err_l1), err_inv=med(err_inv))


def delta_stats(out: dict, ref: dict, base: dict):
    """Share of elements that differ from the base, and rms(out - base) / rms(ref - base)
    per tensor, element weighted (1.0 for the reference itself)."""
    changed = total = 0
    ratio = 0.0
    for name in base:
        b = base[name].float()
        o = out[name].float() - b
        rr = float((ref[name].float() - b).square().mean().sqrt())
        changed += int((o != 0).sum())
        total += o.numel()
        ratio += (float(o.square().mean().sqrt()) / rr if rr else 1.0) * o.numel()
    return dict(changed=changed / total, rms_ratio=ratio / total)


def file_hash(d: Path):
    h = hashlib.sha256()
    for f in sorted(d.glob("*.safetensors")):
        h.update(f.read_bytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------- report

DIFFERENCES = """\
## Where differences come from

What mergekit does that a bit-exact reimplementation has to copy; each was reproduced in torch
on these checkpoints (2026-11-23). A row of the tables above at 0 ulp means mergec now does the
same.

- **Top-k ties** (ties, breadcrumbs, breadcrumbs_ties): mergekit sorts magnitudes with
  `torch.argsort(..., descending=True)` / `torch.sort(w)`, not stable, so which of several equal
  |delta| at the threshold survive is torch's choice (on this CPU neither lowest- nor
  highest-index first). bf16 deltas have few distinct magnitudes, so most thresholds fall in a
  run of equal values. mergec takes equal magnitudes lowest index first (an ascending order is
  the exact reverse); the harness reruns mergekit with torch's sorts patched to that order
  (`index_order_ties`) and reports the comparison in the notes.
- **linear**: mergekit accumulates with `result.addcmul_(tensor, coefficient)`, a fused
  multiply-add (one rounding per model); mergec multiplies then adds (two roundings): 1 bf16 ulp
  on ~1 % of elements. task_arithmetic goes through `deltas.mul_(weights)` then `sum`, like
  mergec, and is bit-exact.
- **sce**: `torch.var(tvs, dim=0, unbiased=False)` on a CPU float32 tensor runs Welford's
  update in float64 in list order (`d = x - mean; mean += d / k; m2 += d * (x - mean)`) and
  rounds `m2 / n` once; an f32 two-pass variance differs in the last bit in ~40 % of elements,
  which moves elements across the `select_topk` threshold. mergec's `variance` builtin does the
  same update (bit-identical to torch for 3, 4 and 8 inputs; an f64 two-pass variance is not,
  for 4 and 8 inputs, on ~0.05-0.1 % of elements). mergekit's
  `k = int(count_nonzero(var) * select_topk)` multiplies an int64 tensor by a float, i.e. in
  float32: one off Python's `int(n * d)` (mergec's) for ~16 % of (count, density) pairs below
  2^24, never at density 0.5 (the one run here).
- **slerp / multislerp / nuslerp coefficients**: mergekit's norms and dots are float32 torch
  reductions (`torch.linalg.vector_norm`, `(x * y).sum()`), mergec's accumulate in float64 and
  round once; the cosines differ by ~1e-6 relative, a rare 1-ulp bf16 difference in the output.

"""

SEMANTICS = """\
## What mergekit does (read from its source)

Quotes are from the installed mergekit (`mergekit/merge_methods/*.py`, `mergekit/sparsify.py`).

- **DARE/DELLA/breadcrumbs/TIES `rescale` is an L1-norm ratio, not 1/density.**
  `GeneralizedTaskArithmeticMerge` passes `rescale_norm=RescaleNorm.l1 if parameters["rescale"]
  else None`, and `rescaled_masked_tensor` does
  `before_scale = tensor.abs().sum(); after_scale = masked.abs().sum()` ...
  `return masked * (before_scale / after_scale)` (and returns `masked` unscaled when either
  sum is below `eps = 1e-7`). For DARE the expectation is 1/density, but the factor is exact
  per tensor: sum|delta| / sum|kept delta|. DELLA uses the same L1 ratio, not the paper's
  per-element 1/p_i.
- **Sparsification is skipped entirely at density >= 1** (`if density >= 1: return tensor` in
  `magnitude`, `magnitude_outliers`, `bernoulli`, `della_magprune`): breadcrumbs at density 1
  removes no outliers whatever gamma is.
- **TIES magnitude top-k**: `k = max(1, int(density * tensor.numel()))`,
  `topk = torch.argsort(w, descending=True)[:k]` with `w = tensor.abs()` (f32 on CPU). argsort is
  not stable, so which of several equal magnitudes at the threshold survive is unspecified; on
  this CPU torch keeps the lower indices first (see the tie note in the table). bf16 deltas
  have few distinct magnitudes, so ties at the threshold are common.
- **breadcrumbs**: `target_n = int(density * num_elems)`, `n_top = int(gamma * num_elems)`,
  `n_bot = max(0, num_elems - target_n - n_top)`; ascending `torch.sort(w).indices`, keep
  `indices[n_bot : n_bot + target_n]` (no `max(1, ...)`; gamma is reduced when it would leave
  fewer than target_n).
- **TIES sign election runs on the weighted deltas** (`deltas.mul_(weights)` before
  `get_mask`): `majority_sign = (deltas.sum(dim=0) >= 0) * 2 - 1` (a tie goes to +), mask
  `sign == majority_sign` (a zero delta is never in the mask). With `normalize` the divisor is
  per element: `divisor = (weights * mask).sum(dim=0); divisor[divisor == 0] = 1`. Without
  consensus (task_arithmetic, dare_linear, breadcrumbs, della_linear)
  `divisor[divisor.abs() < 1e-8] = 1`. A shared `lambda` (default 1) scales the merged delta.
- **Defaults** (normalize, rescale): task_arithmetic (False, False), ties (True, False),
  dare_ties / dare_linear (False, True), breadcrumbs / breadcrumbs_ties (False, False),
  della (True, True), della_linear (False, True). gamma 0.01, epsilon 0.15, density 1.
- **DELLA** ranks magnitudes per row (`torch.argsort(magnitudes, dim=1)`; 1-D tensors are one
  row), `probs = (density - epsilon) + rank_norm * 2 * epsilon` with rank_norm in [0, 1], and
  raises `ValueError` unless density +/- epsilon lies in (0, 1).
- **SCE**: `var = torch.var(tvs, dim=0, unbiased=False)`, `k = int(count_nonzero(var) *
  select_topk)`, `torch.topk(var.abs().view(-1), k)`; weights are the per-model mean of squares
  of the (masked) task vectors normalised to sum 1 (uniform when the sum is below 1e-6); the
  TIES sign mask (`sum` method) then applies and the divisor is `clamp(min=1e-6)`. No `weight`
  parameter.
- **slerp**: t = 0 gives `base_model`; falls back to lerp when `|dot| > 0.9995`
  (`dot_threshold`), norms below `eps = 1e-8` count as 1; computed in f32.
- **nuslerp** defaults `nuslerp_flatten: True`, `nuslerp_row_wise: False` (the whole tensor is
  one vector); `t = weights[1] / (weights[0] + weights[1])` (0.5 if the sum is below 1e-6);
  with a `base_model` it interpolates the task vectors and adds the base. Colinear means
  `(1 - cos_theta**2) <= eps**2` with eps 1e-8; `_normalize` clamps norms at 1e-7.
- **multislerp**: weights normalised to sum 1 (`normalize_weights: True`),
  `unit = x / (norm + eps)` and `tangent_norm = norm(tangent) + eps` with eps 1e-8; with a
  base_model it works on task vectors.
- **karcher**: defaults `max_iter: int = 10, tol: float = 1e-5`; every input (the base too,
  when it is among the inputs) with equal weights `1 / len(tensors)`; inputs with norm
  `<= tol` are dropped from the mean but not from the final scale
  `sum(alpha * norm for alpha, norm in zip(alphas, norms))`; the loop stops when the tangent
  norm is below tol; terms with theta < tol are skipped.
- **model_stock**: cos is averaged over all pairs of task vectors, each pair's norm product
  clamped at 1e-6; `t = N cos / (1 + (N - 1) cos)`, and the base is kept (t = 0) where
  `|1 + (N-1) cos| < 1e-6`; `filter_wise` uses one cos per row (1-D tensors are one row).
- **nearswap**: `weight = (t / absdiff.clamp(min=1e-6)).clamp(min=0, max=1)`: equal values
  give t / 1e-6, not 0/0.
"""


def fmt_ulp(x):
    if x == float("inf"):
        return "NaN mismatch"
    return f"{int(x)}"


def render(results, versions, secs, args):
    lines = []
    lines.append("# mergekit parity\n")
    lines.append(
        "mergec's merge methods against mergekit's on synthetic Llama checkpoints (hidden 64, "
        "intermediate 128, 2 layers, 4 heads / 2 KV heads, vocab 256, untied `lm_head`; a base and "
        "three fine-tunes `a`, `b`, `c` = base + Gaussian noise of 4 %, 6 % and 8 % of each "
        "tensor's RMS, bf16, fixed seeds). mergekit runs on the CPU with `dtype: float32` and "
        "`out_dtype: bfloat16`, so both compute in f32 and round once to bf16. Every tensor of "
        "the two outputs is compared: ulp is the bf16 ordered-bits distance (NaN-aware), "
        "`rel mean/max` the largest per-tensor mean and max |difference| over the mergekit "
        "tensor's RMS.\n")
    lines.append(f"- Generated: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}"
                 f" by `tests/parity/run_parity.sh` ({secs:.0f} s"
                 + (f"; only {', '.join(args.only)}" if args.only else "") + ")")
    lines.append("- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    lines.append(
        "- mergekit runs in the harness's process: `mergekit.merge.run_merge` with the options "
        "`mergekit-yaml CFG OUT --allow-crimes --out-shard-size 1B --no-copy-tokenizer "
        "--no-write-model-card --random-seed 0` builds, because each `mergekit-yaml` process "
        "spends ~10 s importing torch and transformers (the whole run took 375 s that way, "
        "against ~40 s). `--mergekit-cli` runs the real command instead; on 2026-11-23 both gave "
        "byte-identical tensors for all 31 configurations, the seeded DARE/DELLA runs included.")
    lines.append("- mergec is copied to the work dir with the stdlib at the start, so one run uses "
                 "one compiler; `--threads 1` and the default thread count are both run and their "
                 "output bytes compared (`threads 1 = default`).")
    copies = [r["name"] for r in results if r.get("cmp") and any("copied" in n for n in r["cmp"]["notes"])]
    lines.append("- Tensors one side copied unchanged from an input while the other computed them "
                 "are listed in the notes" + (f" ({', '.join(copies)})." if copies else
                                              ": none in this run (mergekit 0.1.5 merges "
                                              "`lm_head` and `embed_tokens` like any tensor)."))
    lines.append("- Rerun: `tests/parity/run_parity.sh` (installs `.venv-parity` on first use, "
                 "then rewrites this file); some methods only: `tests/parity/run_parity.sh "
                 "--methods ties,slerp`. Configs, recipes, outputs and logs stay under "
                 f"`{args.workdir_display}/runs/METHOD/` (`mergekit.yml`, `recipe.merge`).\n")
    lines.append("## Deterministic methods\n")
    lines.append("| method | mergekit config | max ulp | % bit-exact | % within 2 ulp | notes |")
    lines.append("| --- | --- | --- | --- | --- | --- |")
    for r in results:
        if r["random"]:
            continue
        lines.append(row(r))
    lines.append("")
    lines.append("## Random methods (DARE, DELLA)\n")
    lines.append(
        "torch's RNG and mergec's Philox streams differ, so outputs cannot match bit for bit. "
        "Single-model runs (`base + m([tv(x)], density = d)`, weight 1) give the keep rate: the "
        "share of non-zero deltas that changed the output (expected: the density), overall, for "
        "the upper (hi) and lower (lo) half of each row's |delta| ranks (DELLA: density +/- "
        "epsilon/2), and its range over tensors. The rescale factor is each tensor's least-squares "
        "ratio of kept output delta to input delta, element weighted; `rule` says which rule the "
        "factors follow, tensor by tensor, within 1 %: `L1` = sum|delta| / sum|kept delta| for "
        "the mask that run drew (what mergekit computes), `1/density` (the DARE paper's), or "
        "`none`. `reproducible` compares mergec's output bytes with `--threads 1` and with the "
        "default thread count. The 3-model row compares the share of elements that differ from "
        "the base and rms(output - base) per tensor (element weighted, mergekit = 1).\n")
    lines.append("| method | mergekit config | model (density) | keep rate mergekit | keep rate mergec "
                 "| rescale mergekit, rule | rescale mergec, rule | notes |")
    lines.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        if not r["random"]:
            continue
        lines += random_rows(r)
    lines.append("")
    lines.append(DIFFERENCES)
    lines.append(SEMANTICS)
    return "\n".join(lines) + "\n"


def cell(s):
    return str(s).replace("|", "\\|").replace("\n", " ")


def row(r):
    if r.get("mk_error"):
        return f"| {r['name']} | {r['desc']} | - | - | - | mergekit failed: {cell(r['mk_error'])} |"
    if r.get("mc_error"):
        what = "not available" if r.get("mc_unavailable") else "failed"
        return (f"| {r['name']} | {r['desc']} | - | - | - | "
                f"mergec: {what} ({cell(r['mc_error'])}) |")
    c = r["cmp"]
    notes = [f"rel mean {c['rel_mean']:.1e}, max {c['rel_max']:.1e}"]
    if c["max_ulp"] > 0 and c["worst"]:
        notes.append(f"worst {c['worst']}")
    if r.get("cmp_stable"):
        cs = r["cmp_stable"]
        notes.append(f"against mergekit with mergec's tie order in its sorts (equal magnitudes "
                     f"lowest index first): max ulp {fmt_ulp(cs['max_ulp'])}, "
                     f"{cs['pct_exact']:.2f} % bit-exact")
    if r.get("ties_note"):
        notes.append(r["ties_note"])
    if r.get("repro") is not None:
        notes.append("threads 1 = default" if r["repro"] else "threads 1 != default (NOT reproducible)")
    notes += c["notes"]
    return (f"| {r['name']} | {r['desc']} | {fmt_ulp(c['max_ulp'])} | {c['pct_exact']:.2f} | "
            f"{c['pct_2ulp']:.2f} | {cell('; '.join(notes))} |")


def rescale_rule(st):
    """Which rescale rule a run's factors follow: L1 ratio, 1/density, or neither."""
    l1, inv = st["err_l1"], st["err_inv"]
    if st["factor"] < 1.0005 and st["factor"] > 0.9995:
        return "none"
    if l1 < 0.01 and l1 < inv / 2:
        return "L1"
    if inv < 0.01 and inv < l1 / 2:
        return "1/density"
    return f"? (L1 {l1:.1%}, 1/d {inv:.1%})"


def random_rows(r):
    name, desc = r["name"], r["desc"]
    if r.get("mk_error"):
        return [f"| {name} | {desc} | - | - | - | - | - | mergekit failed: {cell(r['mk_error'])} |"]
    if r.get("mc_error"):
        what = "not available" if r.get("mc_unavailable") else "failed"
        return [f"| {name} | {desc} | - | - | - | - | - | mergec: {what} ({cell(r['mc_error'])}) |"]
    out = []

    def keep(st):
        return (f"{st['keep']:.3f} (hi {st['keep_hi']:.3f} / lo {st['keep_lo']:.3f}; tensors "
                f"{st['keep_min']:.2f}-{st['keep_max']:.2f})") if st else "-"

    def factor(st):
        return f"{st['factor']:.3f}, {rescale_rule(st)}" if st else "-"

    for s in r["singles"]:
        k, c = s.get("mk"), s.get("mc")
        note = f"1/density = {1 / s['density']:.3f}"
        if s.get("error"):
            note += "; " + s["error"]
        out.append(f"| {name} | single model, seed 0 | {s['model']} ({s['density']}) | {keep(k)} | "
                   f"{keep(c)} | {factor(k)} | {factor(c)} | {cell(note)} |")
    a, b = r.get("full_mk"), r.get("full_mc")
    notes = []
    if a and b:
        notes.append(f"changed vs base: mergekit {a['changed']:.3f}, mergec {b['changed']:.3f}; "
                     f"rms(out - base) mergec / mergekit {b['rms_ratio']:.3f}")
    if r.get("repro") is not None:
        notes.append("mergec reproducible (threads 1 = default)" if r["repro"]
                     else "mergec NOT reproducible: threads 1 != default")
    out.append(f"| {name} | {desc} | a, b, c | - | - | - | - | {cell('; '.join(notes))} |")
    return out


# ----------------------------------------------------------------------------- main

def magnitude_ties_note(inputs, densities):
    """How many TIES top-k thresholds fall inside a run of equal magnitudes (ties broken by
    index order in both tools only if both pick the same rule)."""
    tied = 0
    total = 0
    for i, m in enumerate(FT):
        for name in inputs["base"]:
            d = (inputs[m][name].float() - inputs["base"][name].float()).abs().reshape(-1)
            k = max(1, int(densities[i] * d.numel()))
            if k >= d.numel():
                continue
            s = torch.sort(d, descending=True).values
            total += 1
            if s[k - 1] == s[k]:
                tied += 1
    return tied, total


def collect(m, done, inputs, ties):
    """Compares one method's outputs (see the tables in render())."""
    name = m["name"]
    r = dict(name=name, desc=m["desc"], random=m["random"],
             mk_yaml=str(m["dir"] / "mergekit.yml"), recipe=str(m["dir"] / "recipe.merge"))
    mk, mc, mc1 = done[(name, "mk")], done[(name, "mc")], done[(name, "mc1")]
    if not mk["ok"]:
        r["mk_error"] = mk["error"]
    if not mc["ok"]:
        r["mc_error"], r["mc_unavailable"] = mc["error"], mc["unavailable"]
    if mc["ok"] and mc1["ok"]:
        r["repro"] = file_hash(mc["out"]) == file_hash(mc1["out"])
    if m["mk_method"] in ("ties",):
        r["ties_note"] = (f"{ties[0]} of {ties[1]} per-model top-k thresholds fall inside "
                          "a run of equal |delta|")
    if mk["ok"] and mc["ok"]:
        out_mk, out_mc = load_dir(mk["out"]), load_dir(mc["out"])
        if not m["random"]:
            r["cmp"] = compare_det(out_mk, out_mc, inputs)
            mks = done.get((name, "mks"))
            if mks and mks["ok"]:
                r["cmp_stable"] = compare_det(load_dir(mks["out"]), out_mc, inputs)
        else:
            r["full_mk"] = delta_stats(out_mk, out_mk, inputs["base"])
            r["full_mc"] = delta_stats(out_mc, out_mk, inputs["base"])
    if m["random"]:
        r["singles"] = []
        for (fm, dens, _, _) in m["single"]:
            s = dict(model=fm, density=dens)
            k1, k2 = done[(name, "mk", fm)], done[(name, "mc", fm)]
            if k1["ok"]:
                s["mk"] = sparsify_stats(load_dir(k1["out"]), inputs["base"], inputs[fm], dens)
            else:
                s["error"] = "mergekit: " + k1["error"]
            if k2["ok"]:
                s["mc"] = sparsify_stats(load_dir(k2["out"]), inputs["base"], inputs[fm], dens)
            else:
                s["error"] = ("mergec: " if "error" not in s else s["error"] + "; mergec: ") + k2["error"]
            r["singles"].append(s)
    return r


def snapshot_mergec(mergec: Path, work: Path) -> Path:
    """Copies the mergec binary (and the stdlib, unless $MERGEC_STDLIB is set) into the work
    dir, so that every run of one harness invocation uses the same compiler even while
    build/bin/mergec or stdlib/ is being rebuilt. Waits up to a minute for a binary that is
    being linked."""
    for _ in range(60):
        if mergec.is_file() and os.access(mergec, os.X_OK):
            try:
                snap = work / "bin" / "mergec"
                snap.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(mergec, snap)
                subprocess.run([str(snap), "--version"], check=True, capture_output=True)
                break
            except (OSError, subprocess.CalledProcessError):
                pass
        time.sleep(1)
    else:
        sys.exit(f"run_parity: {mergec} is missing or does not run (build mergec first)")
    if "MERGEC_STDLIB" not in os.environ:
        lib = work / "stdlib"
        shutil.rmtree(lib, ignore_errors=True)
        shutil.copytree(ROOT / "stdlib", lib)
        os.environ["MERGEC_STDLIB"] = str(lib)
    return snap


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mergec", default=str(ROOT / "build" / "bin" / "mergec"))
    ap.add_argument("--workdir", default=os.environ.get("PARITY_WORKDIR", "/tmp/mergec-parity"))
    ap.add_argument("--methods", default="", help="comma-separated method names (default: all)")
    ap.add_argument("--jobs", type=int, default=2, help="concurrent mergekit/mergec runs")
    ap.add_argument("--mergekit-cli", action="store_true",
                    help="run each merge as a mergekit-yaml process (~10 s start-up each)")
    ap.add_argument("--report", help="write the markdown report (docs/parity.md) here")
    ap.add_argument("--json", help="write the raw results as JSON here")
    args = ap.parse_args()
    args.only = [m.strip() for m in args.methods.split(",") if m.strip()]
    t_start = time.time()

    work = Path(args.workdir).resolve()
    args.workdir_display = args.workdir
    models_dir = work / "models"
    inputs = make_models(models_dir)
    mergec = snapshot_mergec(Path(args.mergec), work)

    methods = method_table()
    if args.methods:
        wanted = {m.strip() for m in args.methods.split(",") if m.strip()}
        methods = [m for m in methods if m["name"] in wanted or m["mk_method"] in wanted]
        if not methods:
            sys.exit(f"run_parity: no method matches {sorted(wanted)}")

    # Every job: (key, kind, callable). Run them all through one pool, then compare.
    jobs = {}
    for i, m in enumerate(methods):
        jd = work / "runs" / m["name"].replace(" ", "_").replace("(", "").replace(")", "")
        m["dir"] = jd
        y = mergekit_config(m["mk_method"], models_dir, m["models"], m["model_params"],
                            m["params"], m["base"])
        r = mergec_recipe(models_dir, m["mc_expr"])
        y = write_once(jd / "mergekit.yml", y)
        r = write_once(jd / "recipe.merge", r)
        jobs[(m["name"], "mk")] = (run_mergekit, (jd, y, 0))
        jobs[(m["name"], "mc")] = (run_mergec, (mergec, jd, r))
        if m["mk_method"] in SORTING_METHODS:
            jobs[(m["name"], "mks")] = (run_mergekit, (jd, y, 0, False, True))
        jobs[(m["name"], "mc1")] = (run_mergec, (mergec, jd, r, "mergec-out-threads1", 1))
        for (fm, dens, expr, mp) in (m["single"] or []):
            sd = jd / f"single-{fm}"
            y = mergekit_config(m["mk_method"], models_dir, [fm], mp, m["params"], "base")
            y = write_once(sd / "mergekit.yml", y)
            r = write_once(sd / "recipe.merge", mergec_recipe(models_dir, expr))
            jobs[(m["name"], "mk", fm)] = (run_mergekit, (sd, y, 0))
            jobs[(m["name"], "mc", fm)] = (run_mergec, (mergec, sd, r))

    # mergec runs go to a thread pool; mergekit runs in this thread, one after another (in
    # process, so torch + transformers are imported once), or in the pool with --mergekit-cli.
    done = {}

    def record(k, res):
        done[k] = res
        print(f"  {'/'.join(map(str, k)):40s} {'ok' if res['ok'] else 'FAILED'} "
              f"{res['secs']:.1f}s", file=sys.stderr)

    mk_keys = [k for k in jobs if k[1] == "mk"]
    mks_keys = [k for k in jobs if k[1] == "mks"]
    mc_keys = [k for k in jobs if k[1] not in ("mk", "mks")]
    with futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        if args.mergekit_cli:
            futs = {pool.submit(jobs[k][0], *jobs[k][1], cli=True): k for k in mk_keys}
        else:
            futs = {}
        futs.update({pool.submit(jobs[k][0], *jobs[k][1]): k for k in mc_keys})
        for k in (mks_keys if args.mergekit_cli else mk_keys + mks_keys):
            record(k, jobs[k][0](*jobs[k][1]))
        for f in futures.as_completed(futs):
            try:
                res = f.result()
            except Exception as e:
                res = dict(ok=False, out=None, error=f"harness: {type(e).__name__}: {e}",
                           secs=0.0, unavailable=False)
            record(futs[f], res)

    ties = magnitude_ties_note(inputs, DENS)
    results = []
    for m in methods:
        try:
            results.append(collect(m, done, inputs, ties))
        except Exception as e:  # a comparison bug must not hide the other methods
            import traceback
            traceback.print_exc()
            results.append(dict(name=m["name"], desc=m["desc"], random=m["random"],
                                mc_error=f"harness error: {type(e).__name__}: {e}"))


    versions = {}
    for pkg in ("mergekit", "torch", "transformers", "safetensors", "numpy"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = "missing"
    try:
        versions["mergec"] = subprocess.run([str(mergec), "--version"], capture_output=True,
                                            text=True).stdout.strip().replace("mergec ", "")
    except OSError:
        pass
    secs = time.time() - t_start
    text = render(results, versions, secs, args)
    if args.report:
        Path(args.report).write_text(text)
        print(f"run_parity: wrote {args.report}", file=sys.stderr)
    Path(args.json or work / "results.json").write_text(json.dumps(results, indent=1, default=str))
    start = text.index("## Deterministic")
    end = text.index("## What mergekit does")
    print(text[start:end])
    print(f"run_parity: {len(methods)} methods in {secs:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
