"""docs/architecture.md has a line for every module, so a new module cannot land unexplained."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "confiture_fast"
DOC = ROOT / "docs" / "architecture.md"


def test_every_module_of_the_package_has_its_line_in_the_architecture_doc():
    text = DOC.read_text()
    modules = [p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
    modules += [p.name for p in PACKAGE.glob("*.pyx")]
    modules += [f"{d.name}/" for d in PACKAGE.iterdir() if d.is_dir() and not d.name.startswith(("_", "."))
                and any(d.glob("*.py"))]
    missing = [m for m in modules if f"`{m}`" not in text and f"`{m.removesuffix('.pyx')}.pyx`" not in text]
    assert not missing, f"docs/architecture.md has no line for {missing}"


def test_every_command_module_is_named_in_the_architecture_doc():
    text = DOC.read_text()
    commands = [p.stem for p in (PACKAGE / "cli").glob("*.py") if p.stem != "__init__"]
    missing = [c for c in commands if f"`{c}.py`" not in text]
    assert not missing, f"docs/architecture.md does not name cli/{missing}"
