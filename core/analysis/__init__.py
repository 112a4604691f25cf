"""Analyses of a trained model as pure functions of tensors (no modality, no file):

    similarity.py   representation alignment: linear CKA, CKNNA, paired cosine similarity, per layer
    spectra.py      weight-histogram entropy, PCA spectrum, effective rank, PCA truncation
    regression.py   ridge regression probe (R^2) of continuous targets from features
    parameters.py   a network's parameters grouped by role (normalisation, modulation, attention, MLP, ...)
                    and their histogram entropy, trained against initial
    activations.py  per-block activations of the Generative Encoder's two passes at the latent positions
                    (forward hooks, registered from outside for one call)

benchmarks/analyze.py runs them on a checkpoint and writes CSV + PNG.
"""
