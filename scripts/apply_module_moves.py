"""Rewrite imports after the issue-17 layout moves: `python scripts/apply_module_moves.py FILE...`.

Reads docs/module-moves.txt (`old new` a line: a moved module, or a name that moved between
modules) and rewrites, in place, in each Python file given:

- `from old import A, B as C` (also parenthesised, over several lines), split into one line per
  new home when the names went to different modules;
- `from pkg import mod` where pkg.mod moved (`from workers import dicom` → `from mri.intake import dicom`,
  or `... import new as mod` when the module was renamed);
- `import old` / `import old as x` (the dotted name in the code after it is rewritten too);
- string references "old.module.Name" / "old.module" (mock.patch targets, dotted paths in
  settings and docs strings). Celery task names are not in the map: workers.tasks stays.

Files with nothing to change are left untouched. Run ruff's isort (`ruff check --fix --select I`)
afterwards for the import order. Used once by the lead to carry the other branch's files over;
deleted after the merge.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MOVES_FILE = ROOT / "docs" / "module-moves.txt"


def _is_module(dotted: str) -> bool:
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def load_moves(path: Path = MOVES_FILE) -> tuple[dict[str, str], dict[tuple[str, str], tuple[str, str]]]:
    """({old module: new module}, {(old module, name): (new module, new name)}). A line whose new
    path is a module of this tree moves a module; any other line moves one name between modules."""
    modules: dict[str, str] = {}
    names: dict[tuple[str, str], tuple[str, str]] = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        old, new = line.split()
        if _is_module(new):
            modules[old] = new
        else:
            names[(old.rpartition(".")[0], old.rpartition(".")[2])] = (new.rpartition(".")[0], new.rpartition(".")[2])
    return modules, names


class Mover:
    def __init__(self, modules: dict[str, str], names: dict[tuple[str, str], tuple[str, str]]) -> None:
        self.modules = modules
        self.names = names

    def home(self, module: str, name: str) -> tuple[str, str]:
        """The module `name` (imported from `module`) lives in now, and its name there."""
        if (module, name) in self.names:
            return self.names[(module, name)]
        return self.modules.get(module, module), name

    def from_import(self, match: re.Match[str]) -> str:
        indent, module, body = match.group("indent"), match.group("module"), match.group("body")
        comment = ""
        text = body
        if not text.lstrip().startswith("("):
            text, hash_, rest = text.partition("#")
            comment = f"  #{rest.rstrip()}" if hash_ else ""
        text = re.sub(r"#[^\n]*", "", text).replace("(", " ").replace(")", " ").replace("\\\n", " ")
        items = [item.strip() for item in text.replace("\n", " ").split(",") if item.strip()]
        groups: dict[str, list[str]] = {}
        for item in items:
            name, _, alias = (part.strip() for part in item.partition(" as "))
            submodule = f"{module}.{name}"
            if submodule in self.modules:  # `from pkg import mod` of a moved module
                new_parent, _, new_name = self.modules[submodule].rpartition(".")
                bound = alias or name
                groups.setdefault(new_parent, []).append(new_name if new_name == bound else f"{new_name} as {bound}")
                continue
            target, new_name = self.home(module, name)
            bound = alias or name
            groups.setdefault(target, []).append(new_name if new_name == bound else f"{new_name} as {bound}")
        if list(groups) == [module]:
            return match.group(0)
        lines = []
        for target, imported in groups.items():
            line = f"{indent}from {target} import {', '.join(imported)}"
            if len(line) + len(comment) > 120:
                names = "".join(f"{indent}    {i},\n" for i in imported)
                line = f"{indent}from {target} import (\n{names}{indent})"
            lines.append(line)
        lines[0] += comment
        return "\n".join(lines)

    def dotted(self, path: str) -> str:
        """A dotted path (module, or module.attribute...) under its new name."""
        parts = path.split(".")
        for cut in range(len(parts), 0, -1):
            head = ".".join(parts[:cut])
            rest = parts[cut:]
            if rest and (head, rest[0]) in self.names:
                return ".".join([*self.names[(head, rest[0])], *rest[1:]])
            if head in self.modules:
                return ".".join([self.modules[head], *rest])
        return path

    def rewrite(self, source: str) -> str:
        from_re = re.compile(
            r"^(?P<indent>[ \t]*)from[ \t]+(?P<module>[\w.]+)[ \t]+import[ \t]+"
            r"(?P<body>\([^)]*\)[^\n]*|[^\n]*(?:\\\n[^\n]*)*)",
            re.MULTILINE,
        )
        source = from_re.sub(self.from_import, source)

        def plain_import(match: re.Match[str]) -> str:
            modules = [part.strip() for part in match.group("modules").split(",")]
            rewritten = []
            for item in modules:
                name, sep, alias = item.partition(" as ")
                rewritten.append(self.dotted(name.strip()) + (f" as {alias.strip()}" if sep else ""))
            return f"{match.group('indent')}import {', '.join(rewritten)}{match.group('tail')}"

        source = re.sub(
            r"^(?P<indent>[ \t]*)import[ \t]+(?P<modules>[\w., \t]+?)(?P<tail>[ \t]*(?:#[^\n]*)?)$",
            plain_import,
            source,
            flags=re.MULTILINE,
        )
        olds = sorted(set(self.modules) | {m for m, _ in self.names}, key=len, reverse=True)
        pattern = re.compile(r"(?<![\w.])(" + "|".join(re.escape(old) for old in olds) + r")((?:\.\w+)*)(?![\w])")

        def reference(match: re.Match[str]) -> str:
            return self.dotted(match.group(0))

        # Dotted names in strings and in code after `import old` (`old.func(...)`).
        return pattern.sub(reference, source)


def main(argv: list[str]) -> int:
    mover = Mover(*load_moves())
    changed = 0
    for name in argv:
        path = Path(name)
        before = path.read_text()
        after = mover.rewrite(before)
        if after != before:
            path.write_text(after)
            changed += 1
            print(f"rewrote {path}")
    print(f"{changed} of {len(argv)} file(s) changed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
