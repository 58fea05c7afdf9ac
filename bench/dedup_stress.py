"""A stress set for the dedup stage: templated pages, from real API reference rendered offline with pydoc.

One page per public class or function (numpy's ufuncs too) of the standard library and of duckdb,
networkx, numpy, pyarrow, pydantic and pygments, public submodules included: `pydoc.render_doc` as
plain text, the way a documentation site renders it. Many are templated near-duplicates: the codec
classes of every `encodings` module, numpy's scalar types (int8 ... float64) and dtypes, pyarrow's
array / scalar / type classes, exception classes, lexers, subclasses that inherit long method lists.
Each object is rendered once, under the name it is defined with (`numpy.int8`, `pyarrow.lib.Array`),
else the first one it is found at (modules and names sorted). Memory addresses in reprs (`0x7f...`)
become `0x0`; a page is cut at 100,000 characters; pages under 50 words are left out. Written as
JSONL (`{"id": dotted name, "text": ...}`), alternate pages to two part files, in
bench/_work/dedup-stress/; built once (about a minute), then reused. Two builds are byte-identical.
`python dedup_stress.py [--rebuild]` builds it and prints its size.
"""

import argparse
import contextlib
import importlib
import inspect
import io
import json
import os
import pkgutil
import pydoc
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

from extract_filter import WORK
from numpy import ufunc

OUT = WORK / "dedup-stress"
PACKAGES = ["duckdb", "networkx", "numpy", "pyarrow", "pydantic", "pygments"]
# not imported: side effects (a browser, a printed poem, a GUI) or deprecated, noisy packages
STDLIB_SKIP = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "lib2to3", "ensurepip", "venv"}
ADDRESS = re.compile(r"0x[0-9a-fA-F]+")
MAX_CHARS, MIN_WORDS = 100_000, 50


def module_names() -> list[str]:
    """The public modules of the standard library and of PACKAGES, submodules too, sorted; tests left out."""
    top = [m for m in sys.stdlib_module_names if not m.startswith("_") and m not in STDLIB_SKIP] + PACKAGES
    names = set()
    for package in top:
        try:
            path = getattr(importlib.import_module(package), "__path__", [])
        except Exception:  # noqa: BLE001 - a module that does not import here (platform, optional deps)
            continue
        names.add(package)
        for info in pkgutil.walk_packages(path, package + ".", onerror=lambda name: None):
            if not any(p.startswith("_") or p in ("test", "tests", "testing") for p in info.name.split(".")):
                names.add(info.name)
    return sorted(names)


def members():
    """(module name, name, object) of every public class and function (numpy's ufuncs too), in order."""
    for module_name in module_names():
        try:
            module = importlib.import_module(module_name)
        except Exception:  # noqa: BLE001 - a module that does not import here (platform, optional deps)
            continue
        for name, obj in sorted(vars(module).items()):
            if not name.startswith("_") and (inspect.isclass(obj) or inspect.isroutine(obj) or isinstance(obj, ufunc)):
                yield module_name, name, obj


def pages():
    """(id, text) of every page, sorted by id. An object found under several names is rendered once, under
    the name it is defined with (`numpy.int8`, not its alias `numpy.byte`), else the first one found."""
    home = {}  # id(object) -> (preference, page id, object)
    for order, (module_name, name, obj) in enumerate(members()):
        alias = (getattr(obj, "__module__", None), getattr(obj, "__name__", None)) != (module_name, name)
        if id(obj) not in home or (alias, order) < home[id(obj)][0]:
            home[id(obj)] = ((alias, order), f"{module_name}.{name}", obj)
    for _, page_id, obj in sorted(home.values(), key=lambda h: h[1]):
        try:
            text = pydoc.render_doc(obj, renderer=pydoc.plaintext)
        except Exception:  # noqa: BLE001 - objects pydoc cannot describe
            continue
        text = ADDRESS.sub("0x0", text)[:MAX_CHARS]
        if len(text.split()) >= MIN_WORDS:
            yield page_id, text


def build(out: Path = OUT, rebuild: bool = False) -> Path:
    """Writes the set to `out` (part-0.jsonl, part-1.jsonl) unless it is there already; returns `out`.
    Rendered in a child process with a fixed hash seed (set and dict reprs in signatures come out the same
    in every build) and an environment of its own: some defaults are `os.environ` (cgi's), and the
    caller's must neither vary the pages nor be written into them."""
    if rebuild or not (out / "part-1.jsonl").exists():
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        env = {"PYTHONHASHSEED": "0", "LANG": "C.UTF-8", "PATH": os.defpath}
        subprocess.run([sys.executable, __file__, "--write", str(tmp)], check=True, env=env, cwd=Path(__file__).parent)
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    return out


def write(out: Path) -> None:
    out.mkdir(parents=True)
    parts = [open(out / f"part-{i}.jsonl", "w", encoding="utf-8") for i in range(2)]
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # imports that print or warn
        warnings.simplefilter("ignore")
        for n, (page_id, text) in enumerate(pages()):
            parts[n % 2].write(json.dumps({"id": page_id, "text": text}, ensure_ascii=False) + "\n")
    for f in parts:
        f.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rebuild", action="store_true", help="build again even if the set is there")
    parser.add_argument("--write", type=Path, help=argparse.SUPPRESS)  # build()'s child process
    args = parser.parse_args()
    if args.write:
        return write(args.write)
    out = build(rebuild=args.rebuild)
    lines = [line for f in sorted(out.glob("*.jsonl")) for line in f.read_text(encoding="utf-8").splitlines()]
    chars = sum(len(json.loads(line)["text"]) for line in lines)
    size = sum(f.stat().st_size for f in out.glob("*.jsonl"))
    print(f"{out}: {len(lines)} pages, {chars / 1e6:.1f} M characters, {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
