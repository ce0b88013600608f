"""A deterministic static tree: Django admin's files plus N seeded synthetic ones, and its 1% variants.

``base`` is the tree of a deploy; ``changed`` has 1% of its files edited and
``deleted`` lacks 1% of them. The variants hard-link every untouched file, so
three trees cost the disk of one.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import django

GENERATOR_VERSION = 3
MIB = 1 << 20
LARGE_MIN = 8 * MIB + 512 * 1024  # over boto3's 8 MiB multipart threshold
LARGE_MAX = 20 * MIB

# (extension, share of the synthetic files, median size in bytes)
KINDS = [
    ("css", 0.22, 4000),
    ("js", 0.30, 6000),
    ("svg", 0.16, 1500),
    ("png", 0.22, 5000),
    ("woff2", 0.03, 30000),
    ("json", 0.04, 2000),
    ("html", 0.03, 3000),
]
WORDS = [
    "grid",
    "flex",
    "color",
    "margin",
    "padding",
    "border",
    "radius",
    "shadow",
    "font",
    "weight",
    "button",
    "modal",
    "toast",
    "menu",
    "item",
    "panel",
    "header",
    "footer",
    "sidebar",
    "card",
    "badge",
    "avatar",
    "chart",
    "table",
    "row",
    "cell",
    "input",
    "select",
    "option",
    "label",
    "tooltip",
    "dropdown",
]
UNICODE_NAMES = ["café", "naïve", "日本語", "ñandú", "Ωmega", "größe", "résumé", "Ελληνικά", "emoji-✓", "Zürich"]
DIR_WORDS = ["app", "vendor", "components", "pages", "widgets", "themes", "icons", "img", "fonts", "lib", "dist"]


@dataclass(frozen=True)
class Tree:
    root: Path
    n: int
    seed: int
    files: list[str]  # every file of base, relative, sorted
    large: list[str]
    changed: list[str]
    deleted: list[str]

    @property
    def base(self) -> Path:
        return self.root / "base"

    @property
    def changed_dir(self) -> Path:
        return self.root / "changed"

    @property
    def deleted_dir(self) -> Path:
        return self.root / "deleted"

    def variant(self, name: str) -> Path:
        return {"base": self.base, "changed": self.changed_dir, "deleted": self.deleted_dir}[name]

    def variant_files(self, name: str) -> list[str]:
        if name == "deleted":
            gone = set(self.deleted)
            return [f for f in self.files if f not in gone]
        return list(self.files)

    def total_bytes(self) -> int:
        return sum((self.base / f).stat().st_size for f in self.files)


def _admin_static() -> Path:
    return Path(django.__file__).parent / "contrib" / "admin" / "static"


def _size(rng: random.Random, median: int) -> int:
    return max(64, min(2 * MIB, int(rng.lognormvariate(math.log(median), 1.1))))


def _text(rng: random.Random, size: int, line: str) -> bytes:
    parts: list[str] = []
    total = 0
    while total < size:
        piece = line.format(a=rng.choice(WORDS), b=rng.choice(WORDS), n=rng.randrange(1000))
        parts.append(piece)
        total += len(piece)
    return "".join(parts).encode()[:size]


def _relative_url(source: str, target: str) -> str:
    return os.path.relpath(target, os.path.dirname(source) or ".").replace(os.sep, "/")


def _content(rng: random.Random, path: str, size: int, images: list[str]) -> bytes:
    ext = path.rsplit(".", 1)[-1]
    if ext == "css":
        body = _text(rng, size, ".{a}-{b}-{n} {{ margin: {n}px; color: #{n:03d}; }}\n")
        if images and rng.random() < 0.3:
            refs = "".join(
                f'.ref-{i} {{ background: url("{_relative_url(path, rng.choice(images))}"); }}\n'
                for i in range(rng.randint(1, 3))
            )
            body = refs.encode() + body
        return body
    if ext == "js":
        return _text(rng, size, "export function {a}_{b}_{n}(x) {{ return x * {n} + '{a}'; }}\n")
    if ext == "svg":
        head = b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100 100">\n'
        return (
            head
            + _text(rng, max(0, size - len(head) - 7), '<circle cx="{n}" cy="{n}" r="3" class="{a}"/>\n')
            + b"</svg>\n"
        )
    if ext == "json":
        return _text(rng, size, '{{"{a}": {n}, "{b}": "{a}"}}\n')
    if ext == "html":
        return _text(rng, size, "<div class='{a} {b}'>{n}</div>\n")
    return b"\x89PNG\r\n\x1a\n" + rng.randbytes(size) if ext == "png" else rng.randbytes(size)


def _name(rng: random.Random, ext: str, index: int) -> str:
    roll = rng.random()
    stem = f"{rng.choice(WORDS)}-{rng.choice(WORDS)}-{index}"
    if roll < 0.03:
        stem = f"{rng.choice(WORDS)} {rng.choice(WORDS)} {index}"
    elif roll < 0.06:
        stem = f"{rng.choice(UNICODE_NAMES)}-{index}"
    return f"{stem}.{ext}"


def _dirs(rng: random.Random, n: int) -> list[str]:
    dirs = []
    for i in range(max(4, n // 25)):
        depth = rng.randint(1, 5)
        parts = [f"{rng.choice(DIR_WORDS)}{rng.randrange(20)}" for _ in range(depth)]
        if i % 40 == 7:
            parts[-1] = f"{rng.choice(UNICODE_NAMES)} assets"
        dirs.append("/".join(parts))
    return dirs


def _plan(rng: random.Random, n: int) -> list[tuple[str, int]]:
    dirs = _dirs(rng, n)
    plan: list[tuple[str, int]] = []
    exts = [k[0] for k in KINDS]
    weights = [k[1] for k in KINDS]
    medians = {k[0]: k[2] for k in KINDS}
    for index in range(n):
        ext = rng.choices(exts, weights)[0]
        plan.append((f"{rng.choice(dirs)}/{_name(rng, ext, index)}", _size(rng, medians[ext])))
    return plan


def large_count(n: int) -> int:
    return 3 + n // 20000


def _generate(base: Path, n: int, seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    shutil.copytree(_admin_static(), base, dirs_exist_ok=True)
    plan = _plan(rng, n)
    images = [p for p, _ in plan if p.endswith((".png", ".svg")) and p.isascii() and " " not in p]
    for path, size in plan:
        target = base / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(_content(rng, path, size, images))
    large = []
    for i in range(large_count(n)):
        path = f"media/wasm/engine-{i}.wasm" if i % 2 else f"media/video/intro {i}.mp4"
        target = base / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(rng.randbytes(rng.randint(LARGE_MIN, LARGE_MAX)))
        large.append(path)
    files = sorted(p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file())
    return files, large


def _edit(path: Path, token: str) -> None:
    data = path.read_bytes()
    if path.suffix in (".css", ".js"):
        data += f"\n/* changed {token} */\n".encode()
    elif path.suffix in (".svg", ".html"):
        data += f"\n<!-- changed {token} -->\n".encode()
    else:
        data += token.encode()
    path.write_bytes(data)


def _link_tree(source: Path, target: Path, files: list[str]) -> None:
    for rel in files:
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.link(source / rel, dest)


def _variants(root: Path, files: list[str], large: list[str], seed: int) -> tuple[list[str], list[str]]:
    # Large files stay out of both sets: "one PUT per changed file" is about ordinary files.
    candidates = [f for f in files if f not in set(large)]
    share = max(1, round(len(files) / 100))
    changed = sorted(random.Random(seed + 1).sample(candidates, share))
    deleted = sorted(random.Random(seed + 2).sample(candidates, share))
    _link_tree(root / "base", root / "changed", [f for f in files if f not in set(changed)])
    for rel in changed:
        dest = root / "changed" / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / "base" / rel, dest)
        _edit(dest, f"{seed}-{rel}")
    _link_tree(root / "base", root / "deleted", [f for f in files if f not in set(deleted)])
    return changed, deleted


def build(root: Path, n: int, seed: int) -> Tree:
    """Generate the trees under ``root`` unless the same ones are already there."""
    spec = {"n": n, "seed": seed, "django": django.__version__, "generator": GENERATOR_VERSION}
    spec_file = root / "spec.json"
    if spec_file.exists():
        saved = json.loads(spec_file.read_text())
        if saved.get("spec") == spec:
            return Tree(root, n, seed, saved["files"], saved["large"], saved["changed"], saved["deleted"])
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    files, large = _generate(root / "base", n, seed)
    changed, deleted = _variants(root, files, large, seed)
    info = {"spec": spec, "files": files, "large": large, "changed": changed, "deleted": deleted}
    spec_file.write_text(json.dumps(info, ensure_ascii=False))
    return Tree(root, n, seed, files, large, changed, deleted)


def touch(directory: Path, files: list[str], when: float) -> None:
    """Give every file the mtime of a fresh checkout, as on a new CI runner."""
    for rel in files:
        os.utime(directory / rel, (when, when))
