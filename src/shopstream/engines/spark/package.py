"""``shopstream spark package``: the Python environment Spark executors run, packed as an
archive for ``spark.archives`` — the way a cluster gets its Python, never by finding the
driver's virtual environment on a shared disk.

The archive holds only what executor code imports (found by importing it in a fresh
interpreter, so it follows the code), at exactly the driver's versions: those
distributions' installed files are copied into a new virtual environment, which
``venv-pack`` packs. Nothing is downloaded. The packed environment's ``bin/python`` points
at the base interpreter's path (``python_prefix`` when it lives elsewhere on the workers,
as in a container image).

The archive carries compiled bytecode (hash-based, so it stays valid whatever times the
workers' untar gives the files): without it every executor's Python worker compiles
polars, pyarrow and ShopStream from source before its first row (0.6 s of a worker's
2.4 to 2.6 s start on the test cluster).
"""

from __future__ import annotations

import compileall
import json
import py_compile
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import venv
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Final

# What executor tasks import: the parsers, the staging writer, and what pyspark's Python
# worker needs for mapInArrow.
EXECUTOR_MODULES: Final = (
    "shopstream.engines.spark.parse",
    "shopstream.engines.spark.stage",
    "pyarrow",
)
ENV_NAME: Final = "shopstream_env"  # the archive's directory name on the executors
_OWN: Final = "shopstream"
# Left out of the archive: stale bytecode (it is compiled anew), test suites, build inputs.
_UNSHIPPED_DIRS: Final = frozenset({"__pycache__", "tests", "include"})
_UNSHIPPED_SUFFIXES: Final = frozenset({".h", ".hpp", ".c", ".cc", ".cpp", ".pyx", ".pxd", ".pxi"})
_LIST_DISTRIBUTIONS: Final = """
import importlib, importlib.metadata as md, json, sys
before = set(sys.modules)
for name in sys.argv[1:]:
    importlib.import_module(name)
roots = {m.partition(".")[0] for m in set(sys.modules) - before}
owners = md.packages_distributions()
print(json.dumps(sorted({d for root in roots for d in owners.get(root, ())})))
"""


@dataclass(frozen=True, slots=True)
class PackedEnvironment:
    archive: Path
    distributions: tuple[str, ...]  # name==version
    size_bytes: int


def executor_distributions() -> list[str]:
    """The installed distributions executor code imports (a fresh interpreter tells)."""
    shown = subprocess.run(
        [sys.executable, "-c", _LIST_DISTRIBUTIONS, *EXECUTOR_MODULES],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    names: list[str] = json.loads(shown)
    return names


def package(output: Path, python_prefix: str | None = None) -> PackedEnvironment:
    """Pack the executors' environment into ``output`` (``.tar.gz``, replaced if there)."""
    import venv_pack

    names = executor_distributions()
    with tempfile.TemporaryDirectory(prefix="shopstream-pack-") as scratch:
        env = Path(scratch) / ENV_NAME
        venv.create(env, symlinks=True, with_pip=False)
        site = _site_packages(env)
        packed = []
        for name in names:
            dist = metadata.distribution(name)
            packed.append(f"{dist.metadata['Name']}=={dist.version}")
            if name == _OWN:
                _copy_own_package(site)
            else:
                _copy_distribution(dist, site)
        compileall.compile_dir(
            site, quiet=1, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH
        )
        output.parent.mkdir(parents=True, exist_ok=True)
        venv_pack.pack(prefix=str(env), output=str(output), python_prefix=python_prefix, force=True)
    return PackedEnvironment(output, tuple(sorted(packed)), output.stat().st_size)


def _site_packages(env: Path) -> Path:
    relative = Path(sysconfig.get_path("purelib")).relative_to(sys.prefix)
    return env / relative


def _copy_distribution(dist: metadata.Distribution, site: Path) -> None:
    """The distribution's files that live in site-packages and that running code can use:
    no scripts, test suites, C headers or Cython sources (every executor unpacks each byte)."""
    for file in dist.files or ():
        if (
            file.parts[0] == ".."
            or not _UNSHIPPED_DIRS.isdisjoint(file.parts[:-1])
            or file.suffix in _UNSHIPPED_SUFFIXES
        ):
            continue
        source = Path(str(dist.locate_file(file)))
        if source.is_file():
            target = site / file
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def _copy_own_package(site: Path) -> None:
    """ShopStream itself, from wherever it is imported (an editable install included)."""
    import shopstream

    shutil.copytree(
        Path(shopstream.__file__).parent,
        site / _OWN,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "static"),
    )
