#!/usr/bin/env python3
"""mergekit's own example configurations, run as they are by both tools.

For each configuration (the structure of mergekit's examples/*.yml: linear, ties, bio-merge,
gradient-slerp, orcamini-platy-44layer, arcee_fusion; written out below, since the pip package
ships no examples), the model names (Hugging Face hub names) are mapped to small generated
Llama checkpoints with 40 layers:
- mergekit gets a copy of the YAML with each hub name replaced by its local path;
- mergec runs the unmodified YAML (`mergec run config.yml -o OUT --model HUB/NAME=PATH ...`),
  which is how a user with a folder of mergekit configs and local copies would run it.
Every output tensor is compared: max ulp (of the output dtype), % bit-exact, % within 2 ulp;
tensors only one side writes are listed. A configuration mergec cannot run yet is reported
with its error.

Run with the parity venv (tests/parity/setup_venv.sh):
    .venv-parity/bin/python tests/parity/run_config_parity.py [--report FILE]
Nothing here is part of the default test run.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run_parity as P  # noqa: E402  (its mergekit runner and helpers)

ROOT = Path(__file__).resolve().parents[2]

# Hub name -> (seed, relative noise); the first is the "pretrained" base the others perturb.
MODELS = {
    "mistralai/Mistral-7B-v0.1": (100, 0.0),
    "mistralai/Mistral-7B-Instruct-v0.2": (101, 0.05),
    "BioMistral/BioMistral-7B": (102, 0.07),
    "psmathur/orca_mini_v3_13b": (103, 0.05),
    "garage-bAInd/Platypus2-13B": (104, 0.06),
    "WizardLM/WizardLM-13B-V1.2": (105, 0.04),
    "microsoft/phi-2": (106, 0.05),
    "abacaj/phi-2-super": (107, 0.05),
    "rhysjones/phi-2-orange-v2": (108, 0.06),
    "mobiuslabsgmbh/aanaphi2-v0.1": (109, 0.07),
    "model_a": (110, 0.05),
    "model_b": (111, 0.06),
}
BASE = "mistralai/Mistral-7B-v0.1"

# The configurations. ties: mergekit's examples/ties.yml now uses ranked_ties (not in
# mergec); this is its structure with merge_method ties (per-model gradient densities and
# weights), as the file read before that change.
CONFIGS = {
    "linear": """\
models:
  - model: psmathur/orca_mini_v3_13b
    parameters:
      weight: 1.0
  - model: WizardLM/WizardLM-13B-V1.2
    parameters:
      weight: 0.3
  - model: garage-bAInd/Platypus2-13B
    parameters:
      weight: 0.5
merge_method: linear
dtype: float16
""",
    "ties": """\
models:
  - model: abacaj/phi-2-super
    parameters:
      density: [0.8, 0.3, 0.1]
      weight: [1.0, 0.8, 0.5]
  - model: rhysjones/phi-2-orange-v2
    parameters:
      density: [0.1, 0.4, 0.1]
      weight: [0.2, 0.8, 0.1]
  - model: mobiuslabsgmbh/aanaphi2-v0.1
    parameters:
      density: [0.1, 0.2, 0.6]
      weight: [0.5, 0.8, 1.0]
merge_method: ties
base_model: microsoft/phi-2
parameters:
dtype: bfloat16
""",
    "bio-merge": """\
models:
  - model: mistralai/Mistral-7B-Instruct-v0.2
    parameters:
      density: 0.5
      weight: 0.5
  - model: BioMistral/BioMistral-7B
    parameters:
      density: 0.5
      weight: 0.5
merge_method: ties
base_model: mistralai/Mistral-7B-v0.1
parameters:
  normalize: false
  int8_mask: true
dtype: float16
""",
    "gradient-slerp": """\
slices:
  - sources:
      - model: psmathur/orca_mini_v3_13b
        layer_range: [0, 40]
      - model: garage-bAInd/Platypus2-13B
        layer_range: [0, 40]
merge_method: slerp
base_model: psmathur/orca_mini_v3_13b
parameters:
  t:
    - filter: self_attn
      value: [0, 0.5, 0.3, 0.7, 1]
    - filter: mlp
      value: [1, 0.5, 0.7, 0.3, 0]
    - value: 0.5
dtype: float16
""",
    "orcamini-platy-44layer": """\
slices:
  - sources:
    - model: psmathur/orca_mini_v3_13b
      layer_range: [0, 24]
  - sources:
    - model: garage-bAInd/Platypus2-13B
      layer_range: [20, 40]
merge_method: passthrough
dtype: float16
""",
    "arcee_fusion": """\
models:
  - model: model_a
  - model: model_b
merge_method: arcee_fusion
base_model: model_a
dtype: bfloat16
""",
}


def make_models(models_dir: Path):
    """One pretrained base and fine-tunes of it (bf16), 40 layers of a tiny Llama."""
    P.DIMS.update(hidden=32, inter=64, layers=40, heads=4, kv_heads=2, vocab=64)
    shapes = P.llama_shapes()
    gen = torch.Generator().manual_seed(MODELS[BASE][0])
    base = {}
    for name, shape in shapes:
        t = (1.0 + 0.05 * torch.randn(shape, generator=gen)) if name.endswith("norm.weight") \
            else 0.02 * torch.randn(shape, generator=gen)
        base[name] = t.to(torch.bfloat16)
    paths = {}
    for hub, (seed, rel) in MODELS.items():
        d = models_dir / hub.replace("/", "__")
        paths[hub] = d
        if (d / "model.safetensors").exists():
            continue
        g = torch.Generator().manual_seed(seed)
        out = {}
        for name, shape in shapes:
            b = base[name].float()
            rms = b.square().mean().sqrt()
            out[name] = (b + rel * rms * torch.randn(shape, generator=g)).to(torch.bfloat16)
        d.mkdir(parents=True, exist_ok=True)
        save_file(out, str(d / "model.safetensors"), metadata={"format": "pt"})
        (d / "config.json").write_text(json.dumps(P.llama_config(), indent=2) + "\n")
    return paths


def ulp_distance(x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Ordered-bits distance of two 16-bit float tensors of one dtype (NaN == NaN is 0)."""
    a = x.contiguous().view(torch.int16).numpy().view(np.uint16).reshape(-1).astype(np.int64)
    b = y.contiguous().view(torch.int16).numpy().view(np.uint16).reshape(-1).astype(np.int64)
    order = lambda i: np.where(i & 0x8000, 0x8000 - i, i)
    d = np.abs(order(a) - order(b)).astype(np.float64)
    exp_mask = 0x7F80 if x.dtype == torch.bfloat16 else 0x7C00
    na, nb = (a & 0x7FFF) > exp_mask, (b & 0x7FFF) > exp_mask
    d[na & nb] = 0
    d[na ^ nb] = np.inf
    return d


def compare(mk_dir: Path, mc_dir: Path):
    mk, mc = P.load_dir(mk_dir), P.load_dir(mc_dir)
    notes = []
    if set(mk) - set(mc):
        notes.append("only in mergekit: %d tensors" % len(set(mk) - set(mc)))
    if set(mc) - set(mk):
        notes.append("only in mergec: %d tensors" % len(set(mc) - set(mk)))
    dists, worst = [], (0, "")
    rounded = set()
    for name in sorted(set(mk) & set(mc)):
        if mk[name].dtype == torch.float32 and mc[name].dtype != torch.float32:
            # mergekit keeps a result its method computed in f32 (arcee_fusion's f32 mask):
            # compared once rounded to the dtype both were asked for.
            mk[name] = mk[name].to(mc[name].dtype)
            rounded.add(name)
        if mk[name].dtype != mc[name].dtype or mk[name].shape != mc[name].shape:
            notes.append("%s: mergekit %s %s, mergec %s %s" % (
                name, mk[name].dtype, tuple(mk[name].shape), mc[name].dtype, tuple(mc[name].shape)))
            continue
        d = ulp_distance(mk[name], mc[name])
        dists.append(d)
        if d.max() > worst[0]:
            worst = (d.max(), name)
    if not dists:
        return dict(max="-", exact="-", within2="-", tensors=len(mc), dtype="-",
                    notes="; ".join(notes) or "no common tensors")
    d = np.concatenate(dists)
    if rounded:
        notes.append("mergekit wrote %d tensors in f32 despite the configured dtype: compared "
                     "rounded to it" % len(rounded))
    if worst[0] > 0:
        notes.append("worst " + worst[1])
    dtype = str(next(iter(mc.values())).dtype).replace("torch.", "")
    return dict(max="%g" % d.max(), exact="%.2f" % (100 * np.mean(d == 0)),
                within2="%.2f" % (100 * np.mean(d <= 2)), tensors=len(mc), dtype=dtype,
                notes="; ".join(notes))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mergec", default=str(ROOT / "build" / "bin" / "mergec"))
    ap.add_argument("--workdir", default="/tmp/mergec-config-parity")
    ap.add_argument("--configs", default="", help="comma-separated names (default: all)")
    ap.add_argument("--report", help="write the markdown table here")
    args = ap.parse_args()
    work = Path(args.workdir).resolve()
    paths = make_models(work / "models")
    wanted = [c.strip() for c in args.configs.split(",") if c.strip()] or list(CONFIGS)
    rows = []
    for name in wanted:
        text = CONFIGS[name]
        jd = work / "runs" / name
        jd.mkdir(parents=True, exist_ok=True)
        original = jd / "config.yml"
        original.write_text(text)
        local = text
        for hub, path in paths.items():
            local = local.replace(hub, str(path))
        mk_cfg = jd / "mergekit.yml"
        mk_cfg.write_text(local)
        mk = P.run_mergekit(jd, mk_cfg, 0)
        out = jd / "mergec-out"
        cmd = [args.mergec, "run", str(original), "-o", str(out), "--quiet", "--force"]
        for hub, path in paths.items():
            if hub in text:
                cmd += ["--model", "%s=%s" % (hub, path)]
        t0 = time.time()
        r = subprocess.run(cmd, capture_output=True, text=True)
        mc_secs = time.time() - t0
        (jd / "mergec.log").write_text(" ".join(cmd) + "\n" + r.stdout + r.stderr)
        row = dict(config=name, mk_ok=mk["ok"], mc_ok=r.returncode == 0,
                   mk_error=mk["error"], mc_error=P.first_error(r.stderr) if r.returncode else None,
                   mk_secs=mk["secs"], mc_secs=mc_secs)
        if mk["ok"] and r.returncode == 0:
            row.update(compare(mk["out"], out))
            if "ties" in text:
                # Sorting methods: again with mergekit's sorts breaking ties between equal
                # magnitudes by lowest index, as mergec does (run_parity's index_order_ties).
                stable = P.run_mergekit(jd, mk_cfg, 0, False, True)
                if stable["ok"]:
                    c = compare(stable["out"], out)
                    row["notes"] = ("%s; with mergec's tie order in mergekit's sorts: max ulp %s, "
                                    "%s %% bit-exact" % (row["notes"], c["max"], c["exact"])
                                    ).lstrip("; ")
        rows.append(row)
        print("%-24s mergekit %s, mergec %s %s" % (
            name, "ok" if mk["ok"] else "FAILED", "ok" if r.returncode == 0 else "FAILED",
            row.get("max", row.get("mc_error") or row.get("mk_error"))), file=sys.stderr)
    lines = ["| configuration | output | max ulp | % bit-exact | % within 2 ulp | notes |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if "max" in r:
            lines.append("| %s | %s, %d tensors | %s | %s | %s | %s |" % (
                r["config"], r["dtype"], r["tensors"], r["max"], r["exact"], r["within2"],
                r["notes"].replace("|", "\\|") or ""))
        else:
            err = r["mc_error"] if not r["mc_ok"] else r["mk_error"]
            who = "mergec" if not r["mc_ok"] else "mergekit"
            lines.append("| %s | - | - | - | - | %s: %s |" % (r["config"], who,
                                                             (err or "").replace("|", "\\|")))
    table = "\n".join(lines) + "\n"
    print(table)
    if args.report:
        Path(args.report).write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
