"""The README's Layout table is the map of the package: every module is in it once,
and every import points up the table (to its own row or one above it)."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _rows() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    table = text[text.index("## Layout"):].split("\n## ", 1)[0]
    rows = []
    for line in table.splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1]
            rows.append(re.findall(r"`([^`]+)`", first))
    return rows


def _imports(path: Path) -> set[str]:
    """The package modules ``path`` imports (at the top or inside functions)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                out.add(node.module.split(".")[0])
            else:
                out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("speechlstm."):
            out.add(node.module.split(".")[1])
    return out


def test_every_module_is_in_the_layout_once_and_every_path_exists():
    rows = _rows()
    named = [n for row in rows for n in row]
    modules = sorted(p.stem for p in (ROOT / "speechlstm").glob("*.py") if p.stem != "__main__")
    listed = [Path(n).stem for n in named if n.startswith("speechlstm/") or (n.endswith(".py") and "/" not in n
                                                                             and n != "app.py")]
    assert sorted(listed) == modules, set(modules) ^ set(listed)
    for name in named:
        path = ROOT / name if "/" in name or name == "app.py" else ROOT / "speechlstm" / name
        assert path.exists(), name


def test_imports_point_up_the_table():
    level = {}
    for i, row in enumerate(_rows()):
        for name in row:
            if name.endswith(".py"):
                level[Path(name).stem] = i
    wrong = [(mod, dep) for mod, i in level.items() if (ROOT / "speechlstm" / f"{mod}.py").exists()
             for dep in _imports(ROOT / "speechlstm" / f"{mod}.py")
             if dep in level and level[dep] > i and mod not in ("__init__",)]
    assert not wrong, f"imports pointing down the Layout table: {wrong}"
