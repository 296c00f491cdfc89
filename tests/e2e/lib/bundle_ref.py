"""A compressed bundle (mergec's `merge compress(...)`, docs/cli.md "Bundles") read straight
from its files with numpy: the NeurIPS 2024 LLM-merging winner's way of keeping N fine-tunes of
one model as one normalised average per matrix plus a per-member low-rank residual and scale.

  W_i ~ scale_i * (avg + U_i @ V_i)       U_i = u_i diag(s_i) (rows x k), V_i = vt_i (k x cols)

`linear` runs one linear layer of member i without ever forming W_i, as the seed describes:
  y = scale_i * (x @ avg^T + (x @ V_i^T) @ U_i^T) + bias
which costs rows*cols + k*(rows + cols) multiply-adds per input row instead of rows*cols (the
average is shared by every member, so N members cost one average and N thin residuals)."""
import json
import os

import numpy as np

import st


class Bundle:
    def __init__(self, path):
        self.path = path
        with open(os.path.join(path, "bundle.json")) as f:
            self.layout = json.load(f)
        self._tensors = st.read_model(path)  # {name: (dtype, array)}

    @property
    def members(self):
        return self.layout["members"]

    def kind(self, name):
        return self.layout["tensors"][name]["kind"]

    def f64(self, name):
        return st.to_f32(*self._tensors[name]).astype(np.float64)

    def factors(self, name, i):
        """(scale_i, avg, U_i, V_i) of a compressed tensor, in f64."""
        return (self.f64(name + ".scale")[i], self.f64(name + ".avg"),
                self.f64("%s.U.%d" % (name, i)), self.f64("%s.V.%d" % (name, i)))

    def reconstruct(self, name, i):
        """Member i's tensor `name` in f64: scale_i (avg + U_i V_i), or its stored copy."""
        if self.kind(name) == "stored":
            return self.f64("%s.model.%d" % (name, i))
        scale, avg, u, v = self.factors(name, i)
        return scale * (avg + u @ v)

    def linear(self, name, i, x, bias=None):
        """y = x @ W_i^T (+ bias) straight from the factors: x is (batch, cols)."""
        scale, avg, u, v = self.factors(name, i)
        y = scale * (x @ avg.T + (x @ v.T) @ u.T)
        return y if bias is None else y + bias
