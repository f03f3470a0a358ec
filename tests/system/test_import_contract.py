"""The layers are a checked contract: import-linter's contracts in setup.cfg hold for the tree, and break
when a forbidden import is added (a copy of the tree with one bad line, so the check is shown to bite)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("launcher", "web", "worker", "shared")


def lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_tree_keeps_every_contract() -> None:
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("shared/config.py", "import web.app", "shared imports neither"),
    ("web/api/users.py", "import worker.settings", "web and worker never import each other"),
    ("web/api/reports.py", "import shared.documents.report_pdf", "PDF rendering runs in the worker"),
    ("shared/storage/base.py", "import shared.tasks", "Infrastructure subpackages import no domain module"),
    ("shared/config.py", "import shared.db.database", "No package imports another in a cycle"),
])
def test_a_forbidden_import_breaks_its_contract(tmp_path: Path, module: str, line: str, contract: str) -> None:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "setup.cfg", tmp_path / "setup.cfg")
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{line}  # noqa\n")
    result = lint(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    broken = " ".join(result.stdout.split("Broken contracts")[1].split())  # the report wraps long names
    assert contract in broken, result.stdout
