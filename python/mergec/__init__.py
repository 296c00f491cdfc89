"""mergec from Python: run and compile merge recipes, inspect fine-tunes (docs/python.md).

    import mergec
    mergec.run("recipe.merge", "merged/", models={"math": "ckpt/math"}, params={"lam": 0.5})
    text = mergec.compile("merge base + tv(a)\\nmodel base = ...", emit="fused")
    report = mergec.inspect("base/", ["math/", "code/"])

The merge is the compiler and runtime `mergec run` uses (a native extension); the GIL is
released while it runs, and Ctrl-C stops it with nothing left at the output.
"""
import json
import os
import re
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from . import _mergec
from .errors import Diagnostic, Error, InputError, RecipeError

__all__ = ["run", "compile", "inspect", "RunResult", "Error", "RecipeError", "InputError",
           "Diagnostic", "__version__"]
__version__ = _mergec.version

PathLike = Union[str, "os.PathLike[str]"]
Progress = Callable[[int, int, int], None]

# A recipe's text has a merge statement: `merge` then an expression or a block.
_MERGE_STATEMENT = re.compile(r"(^|[\s;])merge\s*[{(\w\[-]", re.MULTILINE)


def _stdlib() -> str:
    """$MERGEC_STDLIB, else the stdlib/*.merge files installed with this package."""
    if os.environ.get("MERGEC_STDLIB"):
        return ""  # the driver reads $MERGEC_STDLIB itself
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "stdlib")


def _recipe(recipe: PathLike) -> Tuple[str, Optional[str]]:
    """(name, text): text None when `recipe` is a path to read.

    A path-like object is a path. A string is recipe text when it holds a newline, or when it
    is not an existing file and holds a merge statement (`merge base + tv(a)`); otherwise it is
    a path (a missing one raises InputError)."""
    if not isinstance(recipe, str):
        return os.fspath(recipe), None
    if "\n" in recipe:
        return "<recipe>", recipe
    if os.path.isfile(recipe):
        return recipe, None
    if _MERGE_STATEMENT.search(recipe):
        return "<recipe>", recipe
    return recipe, None


def _pairs(mapping: Optional[Mapping], what: str, value) -> List[Tuple[str, str]]:
    if mapping is None:
        return []
    if not isinstance(mapping, Mapping):
        raise TypeError("%s must be a dict of name to %s" % (what, "path" if what == "models" else "number"))
    return [(str(k), value(v)) for k, v in mapping.items()]


def _number(v) -> str:
    """A param's value as --set writes it."""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return v
    raise TypeError("a param's value must be a number, not %r" % (v,))


def _threads(threads: Optional[int]) -> int:
    if threads is None:
        return 0
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ValueError("threads must be a positive integer")
    return threads


def _progress(progress: Optional[Progress], quiet: bool, unit: str):
    """The callback to hand the merge: `progress`, else a tqdm bar when tqdm is installed and
    not quiet, else none. Returns (callback, close)."""
    if progress is not None:
        return progress, lambda: None
    if quiet:
        return None, lambda: None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None, lambda: None
    bar = []

    def update(done: int, total: int, nbytes: int) -> None:
        if not bar:
            bar.append(tqdm(total=total, unit=unit))
        bar[0].n = done
        bar[0].refresh()

    def close() -> None:
        if bar:
            bar[0].close()
    return update, close


@dataclass
class RunResult:
    """What a merge did: the output directory, tensors written, bytes read and written, the
    seconds it took, and the messages (warnings) it reported."""
    output: str
    tensors: int
    bytes_read: int
    bytes_written: int
    seconds: float
    messages: List[str] = field(default_factory=list)

    @property
    def warnings(self) -> List[str]:
        return [m for m in self.messages if "warning:" in m]


def run(recipe: PathLike, output: PathLike, *, models: Optional[Mapping[str, PathLike]] = None,
        params: Optional[Mapping[str, float]] = None, dtype: Optional[str] = None,
        threads: Optional[int] = None, force: bool = False, quiet: bool = True,
        progress: Optional[Progress] = None) -> RunResult:
    """Runs a recipe (a path, or recipe text: see _recipe) into the directory `output`, like
    `mergec run RECIPE -o OUTPUT`. models: {name: path} as --model (relative to the working
    directory); params: {name: value} as --set; dtype: "f32", "bf16" or "f16" as --dtype;
    threads as --threads (default: every core); force as --force. progress(done_tensors,
    total_tensors, bytes_read) is called after each tensor, on this thread; without it, and
    with quiet=False, a tqdm bar shows when tqdm is installed. quiet=False also prints the
    merge's warnings on sys.stderr. Raises RecipeError, InputError (nothing is then left at
    `output`), or KeyboardInterrupt (Ctrl-C; nothing left either)."""
    name, text = _recipe(recipe)
    callback, close = _progress(progress, quiet, "tensor")
    try:
        r = _mergec.run(name, text, os.fspath(output), _pairs(models, "models", os.fspath),
                        _pairs(params, "params", _number), dtype, _threads(threads), bool(force),
                        bool(quiet), callback, _stdlib(), "")
    finally:
        close()
    return RunResult(r["output"], r["tensors"], r["bytes_read"], r["bytes_written"], r["seconds"],
                     list(r["messages"]))


def compile(recipe: PathLike, emit: str = "fused", *,  # noqa: A001 (mergec compile)
            models: Optional[Mapping[str, PathLike]] = None,
            params: Optional[Mapping[str, float]] = None, dtype: Optional[str] = None) -> str:
    """A compiler stage of a recipe as text, like `mergec compile RECIPE --emit=EMIT`: ast,
    merge, fused, loops, llvm-dialect, llvm, asm (and gpu, nvvm, nvvm-llvm, ptx where mergec was built with
    CUDA). Raises RecipeError or InputError."""
    name, text = _recipe(recipe)
    return _mergec.compile(name, text, emit, _pairs(models, "models", os.fspath),
                           _pairs(params, "params", _number), dtype, _stdlib(), "")


def inspect(base: PathLike, models: Union[Sequence[PathLike], Mapping[str, PathLike]], *,
            density: float = 0.2, threads: Optional[int] = None, png: Optional[PathLike] = None,
            quiet: bool = True, progress: Optional[Progress] = None) -> Dict:
    """How the fine-tunes' task vectors (model - base) compare, per layer and tensor kind, as
    `mergec inspect BASE MODEL... --json` prints it (the schema is in docs/cli.md): a dict with
    "base", "models", "pairs", "density", "tensors" (a row per tensor) and "kinds" (a row per
    kind over all layers). models: paths (named by their last component) or {name: path}.
    png: also write the heat map there. Raises InputError when the models differ in tensors or
    shapes."""
    if isinstance(models, Mapping):
        names = [str(k) for k in models]
        paths = [os.fspath(v) for v in models.values()]
    else:
        if isinstance(models, (str, os.PathLike)):
            raise TypeError("models must be a list of paths or a dict of name to path")
        paths = [os.fspath(p) for p in models]
        names = _mergec.model_names(paths)
    if not paths:
        raise ValueError("inspect needs at least one fine-tune besides the base model")
    callback, close = _progress(progress, quiet, "tensor")
    try:
        text = _mergec.inspect(os.fspath(base), paths, names, float(density), _threads(threads),
                               None if png is None else os.fspath(png), bool(quiet), callback,
                               _stdlib(), "")
    finally:
        close()
    return json.loads(text)
