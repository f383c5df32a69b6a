"""The package's layers (issue 9): core under store under web, with the factory, config and cli on top.

core (conditions, rules, engine, checker, policy, centres, characters) is plain Python: no Flask,
no web framework, no database, nothing of store or web. store holds every SQL statement and no
Flask. web holds no SQL of its own. Read from the source (every import, also inside functions),
since importing any module of the package first runs the factory's `screening/__init__.py`.
"""
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import screening

PACKAGE = Path(screening.__file__).parent
WEB_FRAMEWORK = ("flask", "flask_wtf", "flask_babel", "wtforms", "werkzeug", "jinja2", "click", "babel")
DATABASE = ("sqlite3", "sqlite_utils", "pysqlite3")
LAYERS = {"core": 0, "store": 1, "web": 2}
TOP = ("__init__", "config", "cli")


def modules(layer: str) -> list[Path]:
    return sorted((PACKAGE / layer).glob("*.py"))


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, relative ones resolved."""
    package = ["screening", path.parent.name] if path.parent != PACKAGE else ["screening"]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
                # `from . import db` names a module: resolve each name against the package
                found += [(node.lineno, f"{stem}.{alias.name}" if not node.module else stem) for alias in node.names]
            else:
                found.append((node.lineno, node.module))
    return found


def layer_of(name: str) -> str | None:
    """The layer of a module of the package ('core', 'store', 'web', 'top'), None outside it."""
    parts = name.split(".")
    if parts[0] != "screening":
        return None
    if len(parts) > 1 and parts[1] in LAYERS:
        return parts[1]
    return "top"


def breaches(layer: str, forbidden_outside: tuple[str, ...]) -> list[str]:
    problems = []
    for path in modules(layer):
        for line, name in imports(path):
            other = layer_of(name)
            where = f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}"
            if other is None:
                if name.split(".")[0] in forbidden_outside:
                    problems.append(where)
            elif other == "top" or LAYERS[other] > LAYERS[layer]:
                problems.append(where + " (a higher layer)")
    return problems


def test_every_module_of_the_package_is_in_a_layer():
    loose = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in TOP)
    assert loose == [], f"put these in core/, store/ or web/: {loose}"
    for layer in LAYERS:
        assert modules(layer), layer


def test_core_imports_no_flask_no_database_and_nothing_above_it():
    assert breaches("core", WEB_FRAMEWORK + DATABASE) == []


def test_store_imports_no_flask_and_nothing_above_it():
    assert breaches("store", WEB_FRAMEWORK) == []


def test_web_imports_nothing_above_it():
    assert breaches("web", ()) == []


# at run time the store may load click: sqlite-utils imports it for its own command line
@pytest.mark.parametrize(("layer", "forbidden"), [("core", WEB_FRAMEWORK + DATABASE),
                                                  ("store", tuple(m for m in WEB_FRAMEWORK if m != "click"))])
def test_importing_a_layer_loads_nothing_it_must_not(layer, forbidden):
    """The same, at run time: import every module of the layer without the package's __init__
    (which builds the Flask app) and list what came in."""
    names = [f"screening.{layer}.{p.stem}" for p in modules(layer) if p.stem != "__init__"]
    code = f"""
import sys, types
package = types.ModuleType("screening")
package.__path__ = [{str(PACKAGE)!r}]
sys.modules["screening"] = package
import {", ".join(names)}
print(sorted({{m.split(".")[0] for m in sys.modules}} & set({forbidden!r})))
print(sorted(m for m in sys.modules if m.startswith("screening.") and m.split(".")[1] not in ({layer!r}, "core")))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split("\n")[:2] == ["[]", "[]"]


@pytest.mark.parametrize("layer", ["core", "web"])
def test_sql_is_written_only_in_the_store(layer):
    statement = re.compile(r"""["'](SELECT|INSERT|UPDATE|DELETE|CREATE|PRAGMA|BEGIN)\s""")
    found = [f"{p.name}:{n}" for p in modules(layer) for n, line in enumerate(p.read_text().splitlines(), 1)
             if statement.search(line)]
    assert found == []


def test_the_checks_themselves_catch_a_breach(tmp_path, monkeypatch):
    """A core module importing Flask, or the store, is reported (the test is not blind)."""
    fake = tmp_path / "screening"
    for layer in LAYERS:
        (fake / layer).mkdir(parents=True)
    (fake / "core" / "engine.py").write_text("from flask import g\nfrom ..store import db\n")
    (fake / "store" / "db.py").write_text("def f():\n    from flask import current_app\n")
    (fake / "web" / "public.py").write_text("from .. import cli\n")
    monkeypatch.setattr(f"{__name__}.PACKAGE", fake)
    assert breaches("core", WEB_FRAMEWORK + DATABASE) == [
        "screening/core/engine.py:1 imports flask",
        "screening/core/engine.py:2 imports screening.store (a higher layer)"]
    assert breaches("store", WEB_FRAMEWORK) == ["screening/store/db.py:2 imports flask"]
    assert breaches("web", ()) == ["screening/web/public.py:1 imports screening.cli (a higher layer)"]
