"""Rules of the whole tree that a reviewer should not have to check by eye."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [p for folder in ("core", "modalities", "benchmarks", "tests") for p in (ROOT / folder).rglob("*.py")]
CONFIGS = list((ROOT / "configs").rglob("*.yaml"))
MACHINE_PATH = re.compile(r"""["'\s=:](/(work|tmp|root|home|mnt|data|scratch)/[^\s"']*)""")


def test_every_torch_load_refuses_code_explicitly():
    """torch.load(..., weights_only=True) everywhere: a file that would run code is refused, whatever the
    torch version's default."""
    offenders = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load" \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch":
                flags = {k.arg: k.value for k in node.keywords}
                if not (isinstance(flags.get("weights_only"), ast.Constant) and flags["weights_only"].value is True):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders


def test_no_path_of_a_particular_machine():
    """Data comes through env variables or config keys; temporary folders from tempfile / tmp_path."""
    offenders = [f"{path.relative_to(ROOT)}: {match.group(1)}" for path in SOURCES + CONFIGS
                 for match in MACHINE_PATH.finditer(path.read_text())]
    assert not offenders, offenders
