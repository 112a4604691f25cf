"""Crash-safe checkpoints that hold everything needed for an exact resume.

Writes go to a temporary file in the same folder, are flushed and fsync'ed, then renamed over the final
name, so a checkpoint file is either complete or absent. Older checkpoints are deleted only after the new
one is complete. Loading uses `torch.load(weights_only=True)`: a file that tries to run code is refused.
"""
from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT_VERSION = 1
# step_000000500.pt; a recipe of several stages names the stage: step_000000500-tokenizer.pt
NAME = re.compile(r"^step_(\d{9})(?:-([a-z0-9_]+))?\.pt$")


class CheckpointError(RuntimeError):
    pass


def capture_rng_state() -> dict[str, Any]:
    state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"name": state[0], "keys": torch.from_numpy(state[1].astype(np.int64)), "pos": int(state[2]),
                  "has_gauss": int(state[3]), "cached_gaussian": float(state[4])},
        "python": random.getstate(),
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def checkpoint_path(folder: Path, step: int, stage: str | None = None) -> Path:
    return Path(folder) / (f"step_{step:09d}.pt" if stage is None else f"step_{step:09d}-{stage}.pt")


def list_checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints (temporary files excluded), oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if NAME.match(p.name))


def save_checkpoint(payload: dict[str, Any], folder: Path, step: int, keep_last: int,
                    stage: str | None = None) -> Path:
    """Atomically write `payload` as step_<step>.pt (step_<step>-<stage>.pt when `stage` is given); then prune
    that stage's checkpoints to the newest `keep_last` (earlier stages keep theirs: the next stage starts
    from a stage's last checkpoint)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    final = checkpoint_path(folder, step, stage)
    temporary = final.with_name(f".{final.name}.tmp{os.getpid()}")
    try:
        with open(temporary, "wb") as handle:
            torch.save({"format_version": FORMAT_VERSION, **payload}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, final)
        directory = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(directory)  # make the rename itself durable
        finally:
            os.close(directory)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        previous = [p.name for p in list_checkpoints(folder)]
        raise CheckpointError(
            f"could not write checkpoint {final} ({error.strerror or error}); the previous checkpoints "
            f"{previous or 'none'} are intact. Free disk space, then resume with trainer.resume=auto.") from None
    for old in [p for p in list_checkpoints(folder) if NAME.match(p.name).group(2) == stage][:-keep_last]:
        old.unlink(missing_ok=True)
    return final


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with weights_only=True; one clear error for a corrupt, foreign or tampered file."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # pickle errors, truncated zip archives, forbidden globals...
        raise CheckpointError(f"cannot load checkpoint {path}: {type(error).__name__}: "
                              f"{str(error).splitlines()[0] if str(error) else ''} (corrupt, truncated or not a "
                              f"checkpoint of this project; files that execute code are refused)") from None
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        version = payload.get("format_version") if isinstance(payload, dict) else None
        raise CheckpointError(f"{path} has checkpoint format {version!r}; this version reads {FORMAT_VERSION}")
    return payload


def newest_loadable_checkpoint(folder: Path, map_location="cpu") -> tuple[Path, dict] | None:
    """`trainer.resume=auto`: the newest checkpoint that loads; unreadable ones are reported and skipped."""
    import warnings

    for path in reversed(list_checkpoints(folder)):
        try:
            return path, load_checkpoint(path, map_location)
        except CheckpointError as error:
            warnings.warn(f"skipping unusable checkpoint: {error}")
    return None


def compare_configs(saved: dict, current: dict, prefix: str = "") -> list[str]:
    """Keys whose values differ between two nested config dicts (dotted paths)."""
    differences = []
    for key in sorted(set(saved) | set(current)):
        where = f"{prefix}{key}"
        a, b = saved.get(key, "<absent>"), current.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            differences += compare_configs(a, b, where + ".")
        elif a != b:
            differences.append(f"{where}: checkpoint {a!r} vs now {b!r}")
    return differences
