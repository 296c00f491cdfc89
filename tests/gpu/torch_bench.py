#!/usr/bin/env python3
"""PyTorch baselines for the GPU check (runs on the GPU machine; needs torch with CUDA).

On one R x C bf16 tensor (default 4096 x 14336) of a base and 3 fine-tunes, resident on the GPU:
  - device-to-device copy bandwidth (dst.copy_(src) of a 1 GiB buffer),
  - host->device (pinned and pageable) and device->host (pinned) bandwidth of a 1 GiB buffer,
  - eager PyTorch versions of the merge methods, written as mergekit writes them
    (merge_methods/generalized_task_arithmetic.py + sparsify.py: stacked task vectors, bf16
    on the GPU, magnitude top-k by argsort, sign consensus "sum"): task_arithmetic,
    ties (density 0.2, argsort as sparsify.magnitude; and ties_topk with torch.topk as
    sparsify.build_mask), dare_ties (density 0.2, Bernoulli mask, L1 rescale), and geomedian
    (Weiszfeld in f32 on the 4 models, max_iter 100, tol 1e-6, as stdlib/geomedian.merge).
Times are CUDA events around each call, the median of --reps after --warmup calls.
Each method's "GB/s" counts the minimal traffic: 4 inputs read once + 1 output written once.
Prints one JSON object (and writes it to --json). Without CUDA it prints {"skipped": ...}.
"""
import argparse
import json
import statistics
import sys
import time


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--cols", type=int, default=14336)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--copy-mib", type=int, default=1024)
    ap.add_argument("--methods", default="task_arithmetic,ties,ties_topk,dare_ties,geomedian")
    ap.add_argument("--json")
    ap.add_argument("--device", default="cuda", help="cpu only proves the script (small --rows/--cols)")
    args = ap.parse_args(argv)
    out = {"rows": args.rows, "cols": args.cols, "reps": args.reps, "warmup": args.warmup}
    t_import = time.time()
    try:
        import torch
    except Exception as e:  # noqa: BLE001
        return finish(dict(out, skipped="torch not importable: %s" % e), args)
    out["import_s"] = round(time.time() - t_import, 2)
    out["torch"] = torch.__version__
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        return finish(dict(out, skipped="torch.cuda.is_available() is false"), args)
    dev = torch.device(args.device)
    out["device"] = torch.cuda.get_device_name(0) if cuda else "cpu"
    out["cuda"] = torch.version.cuda

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def timed(fn, reps=args.reps, warmup=args.warmup):
        for _ in range(warmup):
            fn()
        sync()
        times = []
        for _ in range(reps):
            if not cuda:
                t = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t) * 1e3)
                continue
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        return statistics.median(times), min(times)

    # --- bandwidths ---------------------------------------------------------------------------
    nbytes = args.copy_mib << 20
    bw = {}
    try:
        src = torch.empty(nbytes, dtype=torch.uint8, device=dev).fill_(1)
        dst = torch.empty_like(src)
        ms, best = timed(lambda: dst.copy_(src))
        bw["d2d_copy_ms"] = round(ms, 4)
        bw["d2d_copy_GBps"] = round(nbytes / ms / 1e6, 1)          # bytes copied per second
        bw["d2d_copy_rw_GBps"] = round(2 * nbytes / ms / 1e6, 1)   # read + write traffic
        pinned = torch.empty(nbytes, dtype=torch.uint8, pin_memory=cuda).fill_(1)
        ms, _ = timed(lambda: dst.copy_(pinned, non_blocking=True))
        bw["h2d_pinned_GBps"] = round(nbytes / ms / 1e6, 1)
        ms, _ = timed(lambda: pinned.copy_(dst, non_blocking=True))
        bw["d2h_pinned_GBps"] = round(nbytes / ms / 1e6, 1)
        pageable = torch.ones(nbytes, dtype=torch.uint8)
        ms, _ = timed(lambda: dst.copy_(pageable), reps=3, warmup=1)
        bw["h2d_pageable_GBps"] = round(nbytes / ms / 1e6, 1)
        src = dst = pinned = pageable = None  # free them (the lambdas above are done)
    except Exception as e:  # noqa: BLE001
        bw["error"] = repr(e)
    out["bandwidth"] = bw
    if cuda:
        torch.cuda.empty_cache()

    # --- merge methods ------------------------------------------------------------------------
    R, C = args.rows, args.cols
    n = R * C
    g = torch.Generator(device=dev)
    g.manual_seed(0)
    base = (torch.randn(R, C, device=dev, generator=g) / C ** 0.5).to(torch.bfloat16)
    fts = [(base.float() + 0.05 / C ** 0.5 * torch.randn(R, C, device=dev, generator=g)).to(torch.bfloat16)
           for _ in range(3)]
    weights_list = [1.0, 1.0, 1.0]
    density = 0.2

    def rescaled_masked_tensor(tensor, mask, l1):
        masked = tensor * mask
        if not l1:
            return masked
        before, after = tensor.abs().sum(), masked.abs().sum()
        if before < 1e-7 or after < 1e-7:
            return masked
        return masked * (before / after)

    def magnitude(tensor, density):  # sparsify.magnitude (argsort on the GPU in bf16)
        k = int(density * tensor.numel())
        mask = torch.zeros_like(tensor)
        w = tensor.abs().view(-1)
        topk = torch.argsort(w, descending=True)[:k]
        mask.view(-1)[topk] = 1
        return mask * tensor

    def magnitude_topk(tensor, density):  # sparsify.build_mask
        k = int(density * tensor.numel())
        mask = torch.zeros_like(tensor)
        _, idx = torch.topk(tensor.abs().view(-1), k, sorted=False)
        mask.view(-1)[idx] = 1
        return mask * tensor

    def bernoulli(tensor, density):  # sparsify.bernoulli, rescale l1
        mask = torch.bernoulli(torch.full_like(tensor, fill_value=density, dtype=tensor.dtype))
        return rescaled_masked_tensor(tensor, mask, True)

    def gta(sparsify, consensus, normalize):
        deltas = [ft - base for ft in fts]
        if sparsify is not None:
            deltas = [sparsify(d, density) for d in deltas]
        deltas = torch.stack(deltas, dim=0)
        weights = torch.tensor(weights_list, dtype=deltas.dtype, device=deltas.device)
        while len(deltas.shape) > len(weights.shape):
            weights.unsqueeze_(-1)
        weighted = deltas * weights
        if consensus:
            sign = weighted.sign().to(base.dtype)
            majority = (weighted.sum(dim=0) >= 0).to(base.dtype) * 2 - 1
            mask = sign == majority
            mixed = (weighted * mask).sum(dim=0)
            divisor = (weights * mask).sum(dim=0)
            divisor[divisor == 0] = 1
        else:
            mixed = weighted.sum(dim=0)
            divisor = weights.sum(dim=0)
            divisor[divisor.abs() < 1e-8] = 1
        if normalize:
            mixed /= divisor
        return (base + mixed).to(base.dtype)

    geo_iters = []

    def geomedian(max_iter=100, tol=1e-6, eps=1e-8):
        xs = torch.stack([base] + fts, dim=0).float().view(4, -1)
        w = torch.ones(4, device=dev)
        y = xs.mean(dim=0)
        it = 0
        for it in range(1, max_iter + 1):
            d = torch.linalg.vector_norm(xs - y, dim=1).clamp_min(eps)
            c = w / d
            y_new = (c[:, None] * xs).sum(dim=0) / c.sum()
            done = bool(torch.linalg.vector_norm(y_new - y) <= tol * torch.linalg.vector_norm(y))
            y = y_new
            if done:
                break
        geo_iters.append(it)
        return y.view(R, C).to(torch.bfloat16)

    methods = {
        "task_arithmetic": lambda: gta(None, False, False),
        "ties": lambda: gta(magnitude, True, True),
        "ties_topk": lambda: gta(magnitude_topk, True, True),
        "dare_ties": lambda: gta(bernoulli, True, False),
        "geomedian": geomedian,
    }
    traffic = 5 * n * 2  # 4 bf16 inputs read + 1 bf16 output written
    res = {}
    for name in args.methods.split(","):
        try:
            sync()
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            reps = args.reps if name != "geomedian" else max(3, args.reps // 2)
            ms, best = timed(methods[name], reps=reps, warmup=1 if name == "geomedian" else args.warmup)
            r = {"ms": round(ms, 3), "best_ms": round(best, 3), "GBps": round(traffic / ms / 1e6, 1),
                 "peak_MiB": round(torch.cuda.max_memory_allocated() / 2 ** 20) if cuda else None}
            if "d2d_copy_rw_GBps" in bw:
                r["of_d2d"] = round(traffic / ms / 1e6 / bw["d2d_copy_rw_GBps"], 3)
            if name == "geomedian":
                r["iterations"] = geo_iters[-1]
            res[name] = r
        except Exception as e:  # noqa: BLE001
            res[name] = {"error": repr(e)[:300]}
        if cuda:
            torch.cuda.empty_cache()
    out["methods"] = res
    out["traffic_bytes"] = traffic
    return finish(out, args)


def finish(out, args):
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
