"""A function that makes RDKit warn, in a module light enough for a spawned worker to import quickly."""
from rdkit import Chem

LONE_H = "WARNING: not removing hydrogen atom without neighbors"


def lone_hydrogen_warning(item: int) -> int:
    """Makes RDKit warn once (methane plus a lone H, H removal asked); returns `item`."""
    mol = Chem.RWMol(Chem.MolFromSmiles("C"))
    mol.AddAtom(Chem.Atom(1))
    Chem.RemoveHs(mol, sanitize=False)
    return item
