"""The exceptions mergec raises (docs/python.md)."""
from typing import List, NamedTuple, Optional


class Diagnostic(NamedTuple):
    """One diagnostic of a recipe: severity "error", "warning" or "note"; line and column from 1
    (0: the file as a whole)."""
    severity: str
    path: str
    line: int
    column: int
    message: str


class Error(Exception):
    """Every error mergec raises."""


class RecipeError(Error):
    """The recipe has errors. `path`, `line`, `column` and `message` are the first error's;
    `diagnostics` holds every diagnostic reported (errors, warnings, notes) in order; str() is
    the text mergec prints (file:line:col: error: ..., the source line and a caret)."""

    def __init__(self, text: str, diagnostics: List[Diagnostic]):
        super().__init__(text)
        self.text = text
        self.diagnostics = list(diagnostics)
        errors = [d for d in self.diagnostics if d.severity == "error"] or self.diagnostics
        first = errors[0] if errors else Diagnostic("error", "", 0, 0, text)
        self.path, self.line, self.column, self.message = first.path, first.line, first.column, first.message

    def __str__(self) -> str:
        return self.text.rstrip("\n")


class InputError(Error):
    """An input is missing or wrong (a model, a tensor, a safetensors file, the output path):
    `message` names it; `path` and `tensor` are the file and tensor it names ("" when none)."""

    def __init__(self, message: str, path: Optional[str] = "", tensor: Optional[str] = ""):
        super().__init__(message)
        self.message, self.path, self.tensor = message, path or "", tensor or ""
