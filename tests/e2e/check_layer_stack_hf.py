"""A stacked output loads in transformers: LlamaForCausalLM.from_pretrained of a frankenmerge
(layers [a[0:4], b[2:6]], 8 layers from two 6-layer models) has 8 decoder layers whose
parameters are the output's tensors, and its forward pass gives finite logits. Output layer 5's
MLP is b's layer 3's: on one hidden state, it computes what b's own does."""
import os

import numpy as np
import torch
from transformers import LlamaForCausalLM

import models
import runner
import st


def body(args):
    work = runner.fresh_dir(args.work)
    mdir = os.path.join(work, "models")
    kw = dict(hidden=32, intermediate=64, vocab=64, num_layers=6)
    models.make_llama(os.path.join(mdir, "a"), "f32", seed=1, **kw)
    models.make_llama(os.path.join(mdir, "b"), "f32", seed=2, **kw)
    recipe = runner.write_recipe(os.path.join(work, "franken.merge"), """
        model a = "models/a"
        model b = "models/b"
        layers [a[0:4], b[2:6]]
        merge passthrough()
        """)
    out = os.path.join(work, "out")
    runner.run_mergec(["run", recipe, "-o", out, "--quiet"])
    model = LlamaForCausalLM.from_pretrained(out, torch_dtype=torch.float32)
    runner.expect(model.config.num_hidden_layers == 8 and len(model.model.layers) == 8,
                  "transformers sees %d layers" % len(model.model.layers))
    written = st.read_model_f32(out)
    state = model.state_dict()
    for name, value in written.items():
        runner.expect(name in state, "transformers has no %s" % name)
        runner.expect(np.array_equal(state[name].numpy(), value), "%s differs once loaded" % name)
    print("LlamaForCausalLM: %d layers, %d tensors as written" % (len(model.model.layers), len(written)))
    ids = torch.arange(12).reshape(1, 12) % 64
    with torch.no_grad():
        logits = model(ids).logits
    runner.expect(logits.shape == (1, 12, 64) and torch.isfinite(logits).all().item(), "logits")
    print("forward: logits %s, finite" % list(logits.shape))
    b = LlamaForCausalLM.from_pretrained(os.path.join(mdir, "b"), torch_dtype=torch.float32)
    x = torch.randn(1, 5, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        mine = model.model.layers[5].mlp(x)
        theirs = b.model.layers[3].mlp(x)
    runner.expect(torch.equal(mine, theirs), "output layer 5's mlp is not b's layer 3")
    print("output layer 5's mlp computes b's layer 3's")


runner.main(body)
