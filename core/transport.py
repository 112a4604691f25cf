"""Flow-matching transport on the linear path, as pure functions.

Convention (everywhere in this project): flow time t in [0, 1], t = 0 is pure noise, t = 1 is data.
    x_t = t * x1 + (1 - t) * x0,    x0 ~ N(0, I),    v = dx_t/dt = x1 - x0.
The Generative Encoder predicts the clean sample x1 (x-prediction); velocities are derived from it.
"""
from __future__ import annotations

import torch


def broadcast_time(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[B] -> [B, 1, ..., 1] matching like's rank."""
    return t.reshape(t.shape[0], *([1] * (like.dim() - 1))).to(like.dtype)


def interpolate(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Point on the linear path: x_t = t x1 + (1 - t) x0.   t: [B]."""
    tb = broadcast_time(t, x1)
    return tb * x1 + (1 - tb) * x0


def target_velocity(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """dx_t/dt of the linear path."""
    return x1 - x0


def velocity_from_x_prediction(x1_hat: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor,
                               min_remaining_time: float) -> torch.Tensor:
    """v_hat = (x1_hat - x_t) / max(1 - t, min_remaining_time).

    Exact for the linear path when x1_hat = x1; the clamp keeps the division finite near t = 1
    (official UNITE code: 0.05 for training and sampling).
    """
    remaining = (1 - broadcast_time(t, x_t)).clamp_min(min_remaining_time)
    return (x1_hat - x_t) / remaining


def per_sample_mean(values: torch.Tensor, token_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over all but the batch axis, counting only real tokens.

    values: [B, N, C]; token_mask: [B, N] bool (True = real token) or None.  Returns [B].
    """
    if token_mask is None:
        return values.flatten(1).mean(1)
    weights = token_mask.to(values.dtype).unsqueeze(-1)  # [B, N, 1]
    return (values * weights).flatten(1).sum(1) / (weights.flatten(1).sum(1) * values.shape[-1]).clamp_min(1)


def velocity_loss(x1_hat: torch.Tensor, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor,
                  min_remaining_time: float, token_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample MSE between v_hat (from the x-prediction) and the path velocity; [B].

    The official code compares (x1 - x_t)/clamp(1-t) with (x1_hat - x_t)/clamp(1-t), which equals
    x1 - x0 wherever 1 - t >= min_remaining_time; we follow the code (clamped target) so the two agree
    on the whole interval.
    """
    x_t = interpolate(x0, x1, t)
    v_hat = velocity_from_x_prediction(x1_hat, x_t, t, min_remaining_time)
    v = velocity_from_x_prediction(x1, x_t, t, min_remaining_time)
    return per_sample_mean((v_hat - v) ** 2, token_mask)


LOSS_WEIGHTINGS = ("none", "truncated_snr")


def truncated_snr_weight(t: torch.Tensor, low: float = 0.05, high: float = 1.5) -> torch.Tensor:
    """EQGAT-diff's time-dependent loss weight: the signal-to-noise ratio of the linear path,
    SNR(t) = t^2 / (1 - t)^2, clamped to [low, high] (their values 0.05, 1.5); [B].
    On the x-prediction loss it stops the near-noise steps (SNR ~ 0) from being ignored and the near-data
    steps from dominating."""
    snr = t.double() ** 2 / (1 - t.double()).clamp_min(1e-12) ** 2
    return snr.clamp(low, high).to(t.dtype)


def x_prediction_loss(x1_hat: torch.Tensor, x1: torch.Tensor,
                      token_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample ||x1_hat - x1||^2 (the paper text's form of the generative loss); [B]."""
    return per_sample_mean((x1_hat - x1) ** 2, token_mask)


def decoder_latent_noise(z: torch.Tensor, replace: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """UNITE code's decoder-input corruption: samples with `replace` become t z + (1 - t) eps, the rest stay z.

    z, eps: [B, N, C]; replace: [B] bool; t: [B] (the code draws replace with probability 0.5 and
    t ~ U(0.7, 1)). Teaches the decoder to read slightly imperfect latents, as generated ones are."""
    return torch.where(broadcast_time(replace, z).bool(), interpolate(eps, z, t), z)


def additive_latent_noise(z: torch.Tensor, sigma: float, eps: torch.Tensor) -> torch.Tensor:
    """The UNITE paper text's form: z + sigma * eps."""
    return z + sigma * eps


def interpolative_latent_noise(z: torch.Tensor, tau: torch.Tensor, eps: torch.Tensor, gamma: float) -> torch.Tensor:
    """l-DeTok: z' = (1 - tau) z + tau * gamma * eps (gamma = 3 in the paper; additive noise is worse there).

    z, eps ~ N(0, I): [B, N, C]; tau [B] ~ U(0, 1) per sample. tau = 0 leaves z, tau = 1 gives gamma eps."""
    tb = broadcast_time(tau, z)
    return (1 - tb) * z + tb * gamma * eps


def mask_ratio(u: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """l-DeTok's per-sample mask ratio m = max(0, U(low, high)) from u ~ U(0, 1) [B] (paper: U(-0.1, 0.75)),
    so P(m = 0) = -low / (high - low) and E[m] = high^2 / (2 (high - low))."""
    return (low + (high - low) * u).clamp_min(0)


def random_token_mask(token_mask: torch.Tensor, ratio: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Hide round(ratio * n_real) of each sample's real tokens, the ones with the lowest `scores`, and
    always leave at least one visible (the encoder must see something).

    token_mask: [B, N] bool, True = real token; ratio [B] in [0, 1); scores [B, N] ~ U(0, 1).
    Returns [B, N] bool, True = hidden. Padding is never hidden."""
    n_real = token_mask.sum(1)
    n_hidden = torch.minimum(torch.round(ratio * n_real).long(), (n_real - 1).clamp_min(0))  # [B]
    scores = scores.masked_fill(~token_mask, 2.0)  # padding sorts last, never hidden
    rank = scores.argsort(1).argsort(1)  # rank of each token among its sample's tokens
    return rank < n_hidden.unsqueeze(1)


X_PREDICTION_SKIPS = ("none", "edm")


def edm_skip_coefficients(t: torch.Tensor, data_std: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(c_skip, c_out) of EDM's preconditioning (Karras et al. 2022) on the linear path x_t = t x1 + (1 - t) x0:
    x1_hat = c_skip x_t + c_out F has the network output F's target (x1 - c_skip x_t) / c_out of unit variance
    when x1 has std `data_std` (s), with
        c_skip = t s^2 / (t^2 s^2 + (1 - t)^2),   c_out = (1 - t) s / sqrt(t^2 s^2 + (1 - t)^2).
    c_skip = 0, c_out = s at t = 0 (noise: F is the clean latent, like the tokenize pass); c_skip = 1, c_out = 0
    at t = 1 (data: x_t itself), so the prediction near the data end needs no precision from F."""
    denominator = t ** 2 * data_std ** 2 + (1 - t) ** 2
    return t * data_std ** 2 / denominator, (1 - t) * data_std / denominator.sqrt()
