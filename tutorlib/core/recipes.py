"""What a cached artefact is made from, and the key that names it.

A trained-once artefact (a world, a mini-CLIP, a pretrained backbone) is cached under a key.
The key must change whenever anything that made the artefact changes: a setting, the
artefact it was built from, or the *code* that built it. A ``Recipe`` holds all three, so
no version number is ever bumped by hand:

    r = Recipe("mini-clip", values={"steps": 800, ...}, inputs=(world_cfg,),
               code=("tutorlib.zoo.pretrained.training",))
    r["steps"]            # 800: a recipe reads like the dict of its values
    r.entry()             # "mini-clip-<16 hex>.safetensors"

The code part is a hash of the source of the named modules *and of every tutorlib module
they import* (followed through the import statements, lazy ones inside functions too),
with comments, docstrings and layout ignored: editing the caption grammar changes the key
of every world, and so of every model trained on one; rewording a docstring changes none.
"""
from __future__ import annotations

import ast
import functools
import hashlib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from . import _validate, cache

PACKAGE = "tutorlib"
# the package whose source is hashed (tests point it at a copy)
ROOT = Path(__file__).resolve().parents[1]


def _file_of(module: str) -> Path | None:
    """``tutorlib.world.text`` -> its file under ``ROOT`` (a package: its ``__init__.py``)."""
    parts = module.split(".")[1:]
    base = ROOT.joinpath(*parts)
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imports(module: str, tree: ast.AST) -> set[str]:
    """The tutorlib modules that ``module``'s source imports, anywhere in the file."""
    package = module if _file_of(module).name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom):
            if node.level:                          # from ..world import x -> tutorlib.world
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            elif (node.module or "").split(".")[0] == PACKAGE:
                origin = node.module
            else:
                continue
            subs = {f"{origin}.{a.name}" for a in node.names}
            subs = {m for m in subs if _file_of(m) is not None}
            found.update(subs)
            if len(subs) < len(node.names):         # some names live in the module itself
                found.add(origin)
    return {m for m in found if _file_of(m) is not None}


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return tree


def _module_source(module: str) -> tuple[str, frozenset[str]]:
    """A module's code (its AST without docstrings or comments) and the modules it imports."""
    path = _file_of(module)
    return _parsed(module, str(path), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=None)
def _parsed(module: str, path: str, mtime_ns: int) -> tuple[str, frozenset[str]]:
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))   # read again once edited
    imports = frozenset(_imports(module, tree))
    return ast.dump(_without_docstrings(tree)), imports


def modules_behind(*modules: str) -> list[str]:
    """``modules`` and every tutorlib module they import, directly or not, sorted."""
    seen, todo = set(), list(modules)
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        if not isinstance(m, str) or m.split(".")[0] != PACKAGE or _file_of(m) is None:
            raise ValueError(f"modules: got {m!r}, expected the name of a tutorlib module "
                             "(e.g. 'tutorlib.world.dataset')")
        seen.add(m)
        todo.extend(_module_source(m)[1])
    return sorted(seen)


def code_hash(*modules: str) -> str:
    """A hash of the code of ``modules`` and of everything they import from tutorlib."""
    h = hashlib.sha256()
    for m in modules_behind(*modules):
        h.update(m.encode() + b"\0" + _module_source(m)[0].encode() + b"\0")
    return h.hexdigest()[:16]


class Recipe(Mapping):
    """Everything one cached artefact depends on, frozen.

    ``kind``: what it is (the cache entry's prefix); ``values``: every setting it reads,
    taken from the profile when the recipe is made; ``inputs``: what it is built from (world
    configs, other recipes); ``code``: the modules that build it. Reads like the dict of
    its values (``r["steps"]``, ``dict(r)``); ``key`` hashes all four."""

    def __init__(self, kind: str, values: Mapping, inputs: tuple = (), code: tuple[str, ...] = ()):
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"kind: got {kind!r}, expected a non-empty string")
        if not isinstance(values, Mapping):
            raise ValueError(f"values: got {type(values).__name__}, expected a mapping of settings")
        self.kind, self.values = kind, MappingProxyType(dict(values))
        self.inputs, self.code = tuple(inputs), tuple(code)
        modules_behind(*self.code)                  # fail now on a misspelt module

    def __getitem__(self, name):
        return self.values[name]

    def __iter__(self):
        return iter(self.values)

    def __len__(self):
        return len(self.values)

    def __repr__(self):
        return f"Recipe({self.kind!r}, {dict(self.values)!r})"

    def replace(self, **overrides) -> "Recipe":
        """A copy with some values changed (unknown names are refused)."""
        return Recipe(self.kind, _validate.overrides(dict(self.values), overrides), self.inputs,
                      self.code)

    @property
    def key(self) -> str:
        """16 hex digits that change with any value, input or line of code behind it."""
        inputs = [i.key if isinstance(i, Recipe) else i for i in self.inputs]
        return cache.key(self.kind, dict(self.values), inputs, code_hash(*self.code))

    def entry(self, suffix: str = ".safetensors") -> str:
        """The cache entry's name: ``<kind>-<key><suffix>``."""
        return f"{self.kind}-{self.key}{suffix}"
