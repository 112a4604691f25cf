"""Run a named benchmark:  python -m benchmarks.run NAME [ARGS ...]

Each benchmark is a module of this package with a `main()`; results go to benchmarks/results/.
"""
from __future__ import annotations

import importlib
import sys

BENCHMARKS = {
    "parameter_counts": "GE/decoder parameter counts by size, next to the paper's UNITE-B",
    "fault_injection": "SIGKILL at random steps, resume, compare bit for bit (--kills N)",
    "molecule_eval_speed": "evaluation harness throughput on 10,000 QM9 molecules",
    "qm9_data_figures": "stability/validity of QM9's own molecules under every bond route",
    "match_protocols": "InChI vs EDM-SMILES reconstruction match, bond-length W1, on perturbed QM9 copies",
    "cifar10_fid_train_vs_test": "FID between CIFAR-10 train and test images",
    "final_layer_init": "zero vs small-normal GE output-layer init: first gradients, latent collapse",
    "train_throughput": "training steps per second of a config (--steps, Hydra overrides)",
    "guidance_sweep": "generate and evaluate a checkpoint's samples at several CFG scales",
    "image_run_report": "an image run's figures, sample grids and a reconstruction grid into results/",
    "molecule_curve": "molecule designs at the same CPU budget: reconstruction and generation vs minutes",
    "molecule_scaling": "generation quality vs molecule visits per design (convergence aids), EDM curve, visits to 90 %",
    "molecule_diagnosis": "a molecule checkpoint: decoder gain, generated vs real geometry, bond lengths per sampler",
    "analyze": "a checkpoint's GE: pass alignment (CKA/CKNNA/cosine vs t), weight entropy, latent spectrum, truncation, probes",
    "recipes": "unite, two_stage, ldetok, aligntok at equal steps x batch on QM9 and CIFAR-10: table and plot",
    "ablations": "UNITE ablations (shared/separate weights, stop-gradient, flow draws) at one budget: table, alignment plots",
    "image_probe_figures": "short image runs: speed, L1, PSNR, patch seam ratio, grids from raw weights",
    "official_parity": "build tests/fixtures/official_parity.pt from a checkout of the official UNITE code",
    "speed": "the speed suite: training/sampling/evaluation throughput, FLOPs, 40 % MFU step times (speed_suite=short|cpu|full|gpu)",
    "official_parity_speed": "official UNITE code vs ours at one config, alternating A/B (checkout path argument)",
    "hot_paths": "each fast path of a step against its plain eager variant, same run (--profile: where time goes)",
    "memorisation_match": "a run's samples against its training molecules: stability, validity, InChI match",
    "precision": "fp32 vs bf16 autocast per preset on this machine, paired (the measurement behind precision=auto)",
    "step_profile": "where a full step's time goes (phases, op families), plain eager path vs fast path",
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in BENCHMARKS:
        listing = "\n".join(f"  {name:28s} {text}" for name, text in BENCHMARKS.items())
        raise SystemExit(f"usage: python -m benchmarks.run NAME [ARGS ...]\n\nbenchmarks:\n{listing}")
    name = sys.argv[1]
    sys.argv = [f"benchmarks.{name}", *sys.argv[2:]]
    importlib.import_module(f"benchmarks.{name}").main()


if __name__ == "__main__":
    main()
