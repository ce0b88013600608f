"""Copy the checkout without its collectfast/ package, for tox to run the tests in.

    python .ci/checkout_without_package.py CHECKOUT DEST

tox (tox.ini) runs pytest in DEST, so ``import collectfast`` in the tests, and in the children
they start from the root (``python -m tests.deploy_process``, ``python -c ...``), finds the
installed wheel in site-packages: ``python -m pytest`` and ``python -m``/``-c`` put the
working directory first on sys.path, and DEST has no collectfast/.

Copied: tests/, docs/ and example/ (what the tests read) and the top-level files. Left out:
__pycache__, docs/_build and .pytest_cache. node_modules folders (Azurite's, hundreds of MB)
are linked, not copied. DEST's previous copies are replaced.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

FOLDERS = ("tests", "docs", "example")
SKIP = shutil.ignore_patterns("__pycache__", "_build", ".pytest_cache", "node_modules")


def copy(checkout: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for entry in checkout.iterdir():
        if entry.is_file() and not entry.name.startswith("."):
            shutil.copy2(entry, dest / entry.name)
    for name in FOLDERS:
        if not (checkout / name).is_dir():
            continue
        shutil.rmtree(dest / name, ignore_errors=True)
        shutil.copytree(checkout / name, dest / name, ignore=SKIP)
        for folder, subfolders, _files in os.walk(checkout / name):
            if "node_modules" in subfolders:
                subfolders.remove("node_modules")
                source = Path(folder) / "node_modules"
                (dest / source.relative_to(checkout)).symlink_to(source, target_is_directory=True)
            subfolders[:] = [s for s in subfolders if s not in ("__pycache__", "_build", ".pytest_cache")]
    assert not (dest / "collectfast").exists(), dest


if __name__ == "__main__":
    copy(Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve())
