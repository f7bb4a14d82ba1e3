"""The rule: no hard-coded precision outside the precision chooser.

A precision fixed in code ("bf16" for label issues was one) is fast on one machine and 10-100x slower on
another (AVX2-only CPUs emulate bf16). Only mnistcore/hardware.py chooses a precision, and config.py names
the settings; everywhere else in the product a precision literal may only be compared against (reading a
setting), and torch.bfloat16 only picked by such a comparison (applying the choice made).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = [
    ROOT / "app.py",
    *sorted((ROOT / "app_pages").glob("*.py")),
    *sorted((ROOT / "ui").rglob("*.py")),
    *sorted((ROOT / "mnistcore").rglob("*.py")),
]
CHOOSER = {ROOT / "mnistcore" / "hardware.py", ROOT / "mnistcore" / "config.py"}
LITERALS = {"fp32", "bf16"}


def _is_bf16_dtype(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "bfloat16"


def hard_coded_precisions(source: str, filename: str = "<source>") -> list[str]:
    """'file:line: what' for each precision set in code rather than read from a setting or the chooser."""
    tree = ast.parse(source, filename)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}

    def allowed(node: ast.AST) -> bool:
        child, parent = node, parents.get(node)
        while parent is not None and not isinstance(parent, ast.stmt):
            if isinstance(parent, ast.Compare):
                return True  # reading: `config.precision == "bf16"`, `x in ("fp32", "auto")`
            if isinstance(parent, ast.IfExp) and child is not parent.test and isinstance(parent.test, ast.Compare):
                return True  # applying the setting: `torch.bfloat16 if config.precision == "bf16" else ...`
            child, parent = parent, parents.get(parent)
        return False

    found: list[tuple[int, int, str]] = []
    for node in ast.walk(tree):
        literal = isinstance(node, ast.Constant) and node.value in LITERALS
        if (literal or _is_bf16_dtype(node)) and not allowed(node):
            what = repr(node.value) if literal else "torch.bfloat16"
            found.append((node.lineno, node.col_offset, f"{filename}:{node.lineno}: {what}"))
    return [line for *_, line in sorted(found)]


def test_the_rule_catches_a_hard_coded_precision() -> None:
    planted = """
CONFIG = TrainConfig(hidden=1024, precision="bf16")
extra = {"precision": "fp32"}
x = images.to(torch.bfloat16)
def f(precision: str = "bf16"): ...
"""
    assert [line.split(": ")[1] for line in hard_coded_precisions(planted)] == [
        "'bf16'",
        "'fp32'",
        "torch.bfloat16",
        "'bf16'",
    ]
    reading = """
dtype = torch.bfloat16 if config.precision == "bf16" else torch.float32
if config.precision not in ("fp32", "auto"):
    pass
"""
    assert hard_coded_precisions(reading) == []


@pytest.mark.parametrize("path", [p for p in PRODUCT if p not in CHOOSER], ids=lambda p: str(p.relative_to(ROOT)))
def test_no_hard_coded_precision_outside_the_chooser(path: Path) -> None:
    assert hard_coded_precisions(path.read_text(), str(path.relative_to(ROOT))) == []
