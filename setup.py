"""The build: the per-packet modules compiled with Cython (pure-Python mode); metadata is in setup.cfg.

The modules compiled are ``mirrorwatch.COMPILED`` (read from mirrorwatch/__init__.py without importing
it): each ``.py`` is compiled with the ``.pxd`` beside it, which types its records and hot functions.
``MIRRORWATCH_PURE=1 pip install .`` compiles nothing (the same files then run interpreted), and so does
a build without Cython (pyproject.toml requires it, so only ``--no-build-isolation`` can lack it).
A compiler error fails the build: a half-compiled package would run interpreted without saying so.
"""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
PURE_ENV = "MIRRORWATCH_PURE"
DIRECTIVES = {
    "language_level": 3,
    # annotations are documentation here: types come from the .pxd files only, so a compiled
    # function accepts exactly what its interpreted twin accepts
    "annotation_typing": False,
    "binding": False,  # plain C functions, no introspectable function objects: cheaper calls
    "embedsignature": True,  # help() still shows each signature
}
# Debian's Python builds with -g: debug info only slows the build and fattens the modules
COMPILE_ARGS = ["-O2", "-g0"]


def compiled_modules() -> tuple[str, ...]:
    """``COMPILED`` of mirrorwatch/__init__.py, read without importing the package."""
    tree = ast.parse((ROOT / "mirrorwatch" / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "COMPILED" for t in node.targets):
            return ast.literal_eval(node.value)
    raise SystemExit("setup.py: mirrorwatch/__init__.py defines no COMPILED tuple")


def extension(name: str) -> Extension:
    """The extension of one compiled module; a package's is its ``__init__`` (the .so goes inside it)."""
    base = Path(*name.split("."))
    if (ROOT / base).is_dir():
        return Extension(name + ".__init__", [str(base / "__init__.py")], extra_compile_args=COMPILE_ARGS)
    return Extension(name, [str(base.with_suffix(".py"))], extra_compile_args=COMPILE_ARGS)


def extensions() -> list:
    if os.environ.get(PURE_ENV, "") not in ("", "0"):
        print(f"setup.py: {PURE_ENV} is set: nothing compiled (the interpreted build)", file=sys.stderr)
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        print("setup.py: Cython is not installed: nothing compiled (the interpreted build)", file=sys.stderr)
        return []
    exts = [extension(name) for name in compiled_modules()]
    return cythonize(exts, compiler_directives=DIRECTIVES, nthreads=os.cpu_count() or 1, quiet=True)


class BuildExt(build_ext):
    """Compiles the extensions in parallel (one per core) unless told otherwise."""

    def finalize_options(self) -> None:
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1
        super().finalize_options()


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
