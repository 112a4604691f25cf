"""Training and sampling molecules need no chemistry toolkit: GPU machines may lack RDKit, OpenBabel and
fcd-torch. Only the evaluation harness imports them, lazily."""
import subprocess
import sys

BLOCKED = ("rdkit", "openbabel", "fcd_torch")


def test_the_molecule_model_imports_without_rdkit_openbabel_or_fcd():
    code = "; ".join([
        "import sys",
        *(f"sys.modules[{name!r}] = None" for name in BLOCKED),  # any import of them now fails
        "import modalities.molecule.modality, modalities.molecule.model.losses, modalities.molecule.model.decoder",
        "import core.train, core.sample",
        "print('ok')",
    ])
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-2000:]
