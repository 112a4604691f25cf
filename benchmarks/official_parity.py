"""Layer-by-layer parity with the official UNITE code, kept as a small committed fixture.

    PYTHONPATH=<dir with einops> python -m benchmarks.run official_parity /path/to/UNITE-tokenization-generation \
        [--out tests/fixtures/official_parity.pt]

The argument is a checkout of github.com/ShivamDuggal4/UNITE-tokenization-generation (the fixture was
built from 2389f2c); its modules import einops, which this project does not need: install it anywhere
(`pip install --target <dir> einops`). The script imports their modules from the checkout (nothing of
theirs is copied here), builds their UNITE at a small size (SIZES; their code fixes 256 latent tokens and
256-px images), fills every parameter from a seeded generator, maps the weights onto our
`experiment=imagenet256_unite_b` model at the same size (`to_ours`), runs both in float64 on the same
inputs and random draws, prints the largest difference per component, and writes the fixture: seeds,
checksums of the seeded weights, the official code's random draws of one joint step, and its outputs.
Their LPIPS (it downloads VGG weights) is replaced by zero; the perceptual weight is 0 on both sides.
tests/core/test_official_parity.py rebuilds our side from the fixture alone.

The mapping absorbs three conventions: their pixels are [0, 1] and ours [-1, 1] (patch embedding and
pixel head rescaled), their RoPE rotates interleaved pairs and ours split halves (query/key channels
permuted within each head), their patch embedding is a strided convolution and ours a matrix.
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
import types
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "official_parity.pt"
OFFICIAL_COMMIT = "2389f2c"
SIZES = {"depth": 3, "width": 64, "heads": 4, "latent_channels": 8, "in_context_tokens": 4, "in_context_start": 1,
         "decoder_depth": 2, "decoder_width": 64, "decoder_heads": 4, "decoder_mlp": 128, "num_classes": 10,
         "image_size": 256, "patch_size": 16, "flow_draws": 3, "batch": 2}
# Our preset at SIZES; the official decoder input width (768) stays as their code fixes it.
OUR_OVERRIDES = ["experiment=imagenet256_unite_b", f"model.depth={SIZES['depth']}", f"model.width={SIZES['width']}",
                 f"model.heads={SIZES['heads']}", f"model.latent_channels={SIZES['latent_channels']}",
                 f"model.in_context_tokens={SIZES['in_context_tokens']}",
                 f"model.in_context_start={SIZES['in_context_start']}",
                 f"modality.decoder.depth={SIZES['decoder_depth']}", f"modality.decoder.width={SIZES['decoder_width']}",
                 f"modality.decoder.heads={SIZES['decoder_heads']}",
                 f"modality.decoder.mlp_ratio={SIZES['decoder_mlp'] / SIZES['decoder_width']}",
                 f"recipe.flow_draws_per_sample={SIZES['flow_draws']}", "modality.evaluation.fid=false",
                 "trainer.out_dir=unused"]
LR_STEPS_PER_EPOCH = 10
DECODER_STRIDE = 37  # the decoder's 256-px output is kept at every 37th value (the fixture stays small)
TOLERANCE = 1e-5     # on max |ours - official| / max(1, max |official|)


# ---------------------------------------------------------------------------------- seeded tensors
def seeded_value(name: str, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """A float64 tensor drawn from (seed, name) alone, scaled so activations stay O(1)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
    x = torch.randn(shape, generator=generator, dtype=torch.float64)
    if name.endswith("bias"):
        return 0.1 * x
    if len(shape) == 1 and "norm" in name:
        return 1 + 0.1 * x
    if name.endswith("t_embedder.W"):
        return x  # the official Gaussian-Fourier frequencies, N(0, 1)
    if len(shape) >= 2 and name.endswith("weight") and "embedding_table" not in name:
        return x / math.sqrt(math.prod(shape[1:]))  # fan-in scaling (linear and convolution weights)
    return 0.5 * x  # learned tokens, positions, the label table


def seeded_inputs(seed: int) -> dict[str, torch.Tensor]:
    """Every input that is not a random draw of the official code's joint step."""
    g = torch.Generator().manual_seed(seed)
    b, n, c, d = SIZES["batch"], 256, SIZES["latent_channels"], SIZES["width"]
    size = SIZES["image_size"]

    def normal(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)
    # times exactly representable in float32: the official time embedding reads t in float32
    times = torch.tensor([0.0, 0.004, 0.25, 0.5, 1.0], dtype=torch.float64)
    return {"images01": torch.rand(b, 3, size, size, generator=g, dtype=torch.float64),
            "labels": torch.tensor([3, 7]), "block_x": normal(b, 16, d), "block_c": normal(b, d),
            "times": times.float().double(), "denoise_x": normal(b, n, c),
            "denoise_t": torch.tensor([0.3, 0.8]).double(), "denoise_labels": torch.tensor([5, SIZES["num_classes"]]),
            "decoder_z": normal(b, n, c)}


def checksum(x: torch.Tensor) -> torch.Tensor:
    return torch.stack([x.double().sum(), x.double().square().sum()])


def official_weights(fixture: dict) -> dict[str, torch.Tensor]:
    """The official model's parameters, regenerated from the fixture's seed and checked against it."""
    weights = {name: seeded_value(name, tuple(shape), fixture["weight_seed"])
               for name, shape in fixture["official_shapes"].items()}
    for name, expected in fixture["weight_checksums"].items():
        if not torch.allclose(checksum(weights[name]), expected, rtol=1e-12, atol=1e-12):
            raise RuntimeError(f"this torch draws different seeded values for {name} than the one that built "
                               f"{FIXTURE.name}; rebuild it with benchmarks/official_parity.py")
    return weights


# ---------------------------------------------------------------------------------- weight mapping
UNUSED_OFFICIAL = ("encoder.t_embedder.special_time_emb",)  # built, never used in a forward pass


def rope_pair_order(head_dim: int) -> torch.Tensor:
    """Our query/key channel j holds their channel order[j]: they rotate pairs (2i, 2i+1), we (i, i + d/2)."""
    return torch.cat([torch.arange(0, head_dim, 2), torch.arange(1, head_dim, 2)])


def to_ours(official: dict[str, torch.Tensor], heads: int, num_classes: int) -> dict[str, torch.Tensor]:
    """Official UNITE parameter names and conventions -> our recipe's state dict (parameters + Fourier buffer)."""
    ours: dict[str, torch.Tensor] = {}
    width = official["encoder.up_sample.weight"].shape[0]
    order = rope_pair_order(width // heads)

    def qk_permuted(x: torch.Tensor) -> torch.Tensor:  # qkv rows are (3, heads, head_dim)
        x = x.reshape(3, heads, width // heads, *x.shape[1:]).clone()
        x[:2] = x[:2, :, order]
        return x.reshape(3 * width, *x.shape[3:])
    conv_w, conv_b = official["patch_embed.patch_embeddings.projection.weight"], \
        official["patch_embed.patch_embeddings.projection.bias"]
    # conv on x01 = (x + 1) / 2 with x on [-1, 1]: W x / 2 + (b + sum(W) / 2); patches flattened (row, col, channel)
    ours["embedder.patch_embed.weight"] = conv_w.permute(0, 2, 3, 1).reshape(conv_w.shape[0], -1) / 2
    ours["embedder.patch_embed.bias"] = conv_b + conv_w.sum((1, 2, 3)) / 2
    ours["embedder.latent_slots"] = official["latent_tokens"]
    renames = {"encoder.up_sample": "encoder.latent_in", "encoder.in_context_posemb": "encoder.in_context_pos",
               "encoder.t_embedder.W": "encoder.t_embedder.frequencies", "encoder.t_embedder.mlp": "encoder.t_embedder.mlp",
               "encoder.final_layer.norm_final": "encoder.final_layer.norm", "encoder.final_layer": "encoder.final_layer",
               "encoder_layer_norm": "encoder.latent_norm", "up_sample_decoder": "decoder.trunk.latent_in",
               "decoder.decoder_embed": "decoder.trunk.embed", "decoder.trainable_cls_token": "decoder.trunk.cls_token",
               "decoder.decoder_norm": "decoder.trunk.norm"}
    block_parts = {"mlp.w12": "mlp.gate_and_value", "mlp.w3": "mlp.out"}
    decoder_parts = {"layernorm_before": "norm1", "qkv": "attn.qkv", "attn_proj": "attn.proj",
                     "layernorm_after": "norm2", "ffn_up": "fc1", "ffn_down": "fc2"}
    for name, value in official.items():
        if name in UNUSED_OFFICIAL or name.startswith("patch_embed.") or name == "latent_tokens":
            continue
        if name == "encoder.y_embedder.embedding_table.weight":
            ours["encoder.y_embedder.table.weight"] = value[:num_classes + 1]  # their last row is never read
        elif name.startswith("encoder.blocks."):
            index, part = name[len("encoder.blocks."):].split(".", 1)
            for theirs, mine in block_parts.items():
                part = part.replace(theirs, mine)
            if part.startswith("attn.qkv"):
                value = qk_permuted(value)
            elif part.startswith(("attn.q_norm", "attn.k_norm")):
                value = value[order]
            ours[f"encoder.blocks.{index}.{part}"] = value
        elif name.startswith("decoder.decoder_layers."):
            index, part = name[len("decoder.decoder_layers."):].split(".", 1)
            module, leaf = part.rsplit(".", 1)
            ours[f"decoder.trunk.blocks.{index}.{decoder_parts[module]}.{leaf}"] = value
        elif name.startswith("decoder.decoder_pred."):
            # their head predicts [0, 1] pixels, ours [-1, 1]: y = 2 y01 - 1
            ours["decoder.pixel_head." + name.rsplit(".", 1)[1]] = 2 * value - float(name.endswith("bias"))
        else:
            prefix = max((p for p in renames if name == p or name.startswith(p + ".")), key=len)
            ours[renames[prefix] + name[len(prefix):]] = value
    return ours


# ---------------------------------------------------------------------------------- our side
def class_folders(root: Path, count: int, images_per_class: int = 1) -> Path:
    """An ImageFolder of `count` classes with tiny images (one each by default): the modality reads its class count."""
    for index in range(count):
        (root / "train" / f"class{index:02d}").mkdir(parents=True, exist_ok=True)
        for image in range(images_per_class):
            Image.new("RGB", (4, 4)).save(root / "train" / f"class{index:02d}" / f"{image}.png")
    return root


def build_ours(cfg) -> nn.Module:
    """Our recipe for a composed config, in float64."""
    from core.build import build_modality, build_recipe
    return build_recipe(cfg, build_modality(cfg)).double()


def load_mapped(recipe: nn.Module, official: dict[str, torch.Tensor]) -> list[str]:
    """Load the mapped weights; returns our state-dict entries that received none (must be empty)."""
    mapped = to_ours(official, SIZES["heads"], SIZES["num_classes"])
    state = recipe.state_dict()
    unknown = sorted(set(mapped) - set(state))
    if unknown:
        raise KeyError(f"mapped names that our model does not have: {unknown}")
    state.update({k: v.to(state[k].dtype) for k, v in mapped.items()})
    recipe.load_state_dict(state)
    return sorted(set(state) - set(mapped))


def our_outputs(recipe, inputs: dict, draws: dict, lr_steps: list[int], max_steps: int,
                lr_schedule: dict) -> dict[str, torch.Tensor]:
    """Every compared output of our model, on the fixture's inputs and the official code's draws."""
    from core.lr_schedule import lr_multiplier
    from core.recipes.unite import JointDraws
    from modalities.image.datasets import ImageBatch
    b = SIZES["batch"]
    batch = ImageBatch(2 * inputs["images01"] - 1, inputs["labels"])
    layout = recipe.embedder.layout(b, torch.device("cpu"))
    encoder = recipe.encoder
    out = {}
    with torch.no_grad():
        recipe.eval()
        positions = torch.arange(16, dtype=torch.float32).view(1, 16, 1).expand(b, 16, 1)
        out["ge_block"] = encoder.blocks[0](inputs["block_x"], inputs["block_c"], None, encoder.rotary(positions))
        out["time_embedding"] = encoder.t_embedder(inputs["times"])
        observation = recipe.embedder(batch)
        out["tokenize"] = encoder.tokenize(observation, draws["encode_noise"], draws["encode_t"])
        out["denoise"] = encoder.denoise(inputs["denoise_x"], inputs["denoise_t"], inputs["denoise_labels"], layout)
        decoded = recipe.decoder(inputs["decoder_z"], layout)
        out["decoder"] = ((decoded + 1) / 2).flatten()[::DECODER_STRIDE]  # on their [0, 1] scale
        recipe.train()
        joint = JointDraws(**{k: draws.get(k) for k in JointDraws.__dataclass_fields__})  # self_condition: None
        loss, parts = recipe(batch, draws=joint)
    out["joint_loss"] = torch.stack([loss, parts["rec_loss"], parts["gen_loss"]])
    multiplier = lr_multiplier(lr_schedule, LR_STEPS_PER_EPOCH, max_steps)
    out["lr_schedule"] = torch.tensor([multiplier(step) for step in lr_steps], dtype=torch.float64)
    return out


def differences(ours: dict, official: dict) -> dict[str, tuple[float, float]]:
    """(max |ours - official|, the same over max(1, max |official|)) per component."""
    result = {}
    for name, theirs in official.items():
        absolute = float((ours[name].double() - theirs.double()).abs().max())
        result[name] = (absolute, absolute / max(1.0, float(theirs.abs().max())))
    return result


# ---------------------------------------------------------------------------------- the official side
def import_official(checkout: Path):
    """Their modules from the checkout, with LPIPS (which downloads VGG weights) replaced by zero."""
    sys.path.insert(0, str(checkout))
    stub = types.ModuleType("modules.autoencoding_utils.lpips")

    class NoPerceptualLoss(nn.Module):
        def forward(self, a, b):
            return a.new_zeros(())
    stub.LPIPS = NoPerceptualLoss
    sys.modules["modules.autoencoding_utils.lpips"] = stub
    import models.unite as unite_module
    import utils.optim as optim_module
    return unite_module, optim_module


def build_official_unite(unite_module, sizes: dict, latents: int, name: str):
    """Their UNITE class at `sizes` (our size names), registered under `name`; their defaults elsewhere."""
    unite_module.ENCODER_CONFIGS[name] = (sizes["depth"], sizes["width"], sizes["heads"])
    unite_module.DECODER_CONFIGS[name] = (sizes["decoder_depth"], sizes["decoder_width"], sizes["decoder_heads"],
                                          sizes["decoder_mlp"])
    cfg = {"encoder_model_size": name, "decoder_model_size": name, "patch_size": sizes["patch_size"],
           "diffusion_input_dim": sizes["latent_channels"], "in_content_start": sizes["in_context_start"],
           "in_content_len": sizes["in_context_tokens"], "use_qknorm_encoder": True,
           "modulation_recon_timestep_max": 0.01, "noising_t_start": 0.7, "timestep_shift_mode": "manual",
           "timestep_shift_alpha": 0.5, "flow_steps_per_recon": sizes["flow_draws"],
           "flow_mini_batch": sizes["flow_draws"], "lognorm_mu": 0.0, "lognorm_sigma": 1.0,
           "loss": {"perceptual_weight": 0.0, "gen_loss_weight": 1.0}}
    return unite_module.UNITE(cfg, num_latent_tokens=latents, num_classes=sizes["num_classes"])


def official_model(unite_module, weight_seed: int):
    model = build_official_unite(unite_module, SIZES, 256, "Parity").double()
    seeded = [(n, p) for n, p in model.named_parameters() if p.requires_grad or n.endswith("t_embedder.W")]
    with torch.no_grad():
        for name, parameter in seeded:
            parameter.copy_(seeded_value(name, tuple(parameter.shape), weight_seed))
    if model.patch_embed.position_embeddings.abs().max() != 0:
        raise RuntimeError("the official patch embedding now adds positions; the mapping assumes it adds none")
    return model, {n: p.detach().clone() for n, p in seeded}


def official_outputs(model, optim_module, checkout: Path, inputs: dict, lr_steps: list[int], draw_seed: int):
    """Their outputs on the inputs, and the random draws their code made (recorded, not replaced)."""
    import yaml
    encoder, b = model.encoder, SIZES["batch"]
    out, draws = {}, {}
    with torch.no_grad():
        model.eval()
        out["ge_block"] = encoder.blocks[0](inputs["block_x"], inputs["block_c"], encoder.feat_rope)
        out["time_embedding"] = encoder.t_embedder(inputs["times"])
        calls = []
        hook = encoder.register_forward_pre_hook(lambda m, args, kwargs: calls.append((args, kwargs)), with_kwargs=True)
        torch.manual_seed(draw_seed)  # their encode pass draws its noise from the global generator: seeded, so
        out["tokenize"] = model.encoder_layer_norm(model.encode(inputs["images01"]))  # the fixture is reproducible
        hook.remove()
        draws["encode_noise"], draws["encode_t"] = calls[0][0][0].clone(), calls[0][1]["t"].double().clone()
        pos = model.latent_tokens.expand(b, -1, -1)
        out["denoise"] = model.encoder_layer_norm(encoder(inputs["denoise_x"], inputs["denoise_t"],
                                                          y=inputs["denoise_labels"], pos_embed=pos))
        out["decoder"] = model.decode(inputs["decoder_z"]).flatten()[::DECODER_STRIDE]
        out["joint_loss"], joint_draws = record_joint_step(model, inputs, draw_seed)
    draws.update(joint_draws)
    schedule = yaml.safe_load((checkout / "configs" / "imagenet.yaml").read_text())["training"]["scheduler"]
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler, _ = optim_module.build_scheduler(optimizer, LR_STEPS_PER_EPOCH, {"scheduler": schedule})
    out["lr_schedule"] = torch.tensor([scheduler.lr_lambdas[0](s) for s in lr_steps], dtype=torch.float64)
    return out, draws


def record_joint_step(model, inputs: dict, seed: int) -> tuple[torch.Tensor, dict]:
    """One official training forward (their RNG), recording every random number it drew:
    (loss, rec_loss, flow_loss) and the draws in our JointDraws layout."""
    torch.manual_seed(seed)
    np.random.seed(seed)  # their logit-normal times come from scipy
    model.train()
    model.encoder.y_embedder.dropout_prob = 0.5  # so that some of the 2 x 3 labels are dropped
    plans, drops, encodes, decoder_inputs = [], [], [], []
    plan, token_drop = model.transport.path_sampler.plan, model.encoder.y_embedder.token_drop

    def recording_plan(t, x0, x1):
        plans.append((t.clone(), x0.clone()))
        return plan(t, x0, x1)

    def recording_drop(labels, force_drop_ids):
        dropped = token_drop(labels, force_drop_ids)
        if force_drop_ids is None:
            drops.append(dropped != labels)
        return dropped
    model.transport.path_sampler.plan, model.encoder.y_embedder.token_drop = recording_plan, recording_drop
    hooks = [model.encoder.register_forward_pre_hook(
                 lambda m, args, kwargs: encodes.append((args[0].clone(), kwargs["t"].clone()))
                 if "img_patch_embed" in kwargs else None, with_kwargs=True),
             model.up_sample_decoder.register_forward_pre_hook(lambda m, args: decoder_inputs.append(args[0].clone()))]
    total, parts = model(inputs["images01"], labels=inputs["labels"])
    for hook in hooks:
        hook.remove()
    del model.transport.path_sampler.plan, model.encoder.y_embedder.token_drop
    k, b = SIZES["flow_draws"], SIZES["batch"]
    z = parts["learned_latent_tokens"]
    (decoder_t, decoder_eps), *flows = plans
    flow_t = torch.cat([t for t, _ in flows]).view(k, b)
    flow_x0 = torch.cat([x0 for _, x0 in flows]).view(k, b, *z.shape[1:])
    draws = {"tokenize_noise": encodes[0][0], "tokenize_t": encodes[0][1].double(),
             "decoder_replace": (decoder_inputs[0] - z).abs().flatten(1).amax(1) > 0,
             "decoder_t": decoder_t.double(), "decoder_eps": decoder_eps, "flow_t": flow_t.double(),
             "flow_x0": flow_x0, "class_drop": torch.cat(drops).view(k, b)}
    losses = torch.stack([total, parts["rec_loss"], parts["flow/flow_loss"]]).detach()
    return losses, draws


def official_unite_b(unite_module) -> dict:
    """Trainable parameters of the official UNITE-B (configs/imagenet.yaml, 1000 classes) and the tensors of
    it that no forward pass reads."""
    import yaml
    cfg = yaml.safe_load((Path(unite_module.__file__).parents[1] / "configs" / "imagenet.yaml").read_text())
    model = unite_module.UNITE(cfg["gen_tok"], num_classes=1000)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    width = model.encoder.hidden_size
    return {"trainable": trainable, "unused": {"encoder.t_embedder.special_time_emb": width,
                                               "encoder.y_embedder.embedding_table.weight[1001]": width}}


def compact(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Own storage for every tensor (a strided view would save its whole base tensor)."""
    return {name: value.detach().clone().contiguous() for name, value in tensors.items()}


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    with initialize_config_dir(config_dir=str(Path(__file__).resolve().parents[1] / "configs"), version_base="1.3"):
        return hydra_compose("train", overrides=overrides)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkout", type=Path, help="a checkout of ShivamDuggal4/UNITE-tokenization-generation")
    parser.add_argument("--out", type=Path, default=FIXTURE)
    parser.add_argument("--weight-seed", type=int, default=0)
    parser.add_argument("--input-seed", type=int, default=1)
    parser.add_argument("--draw-seed", type=int, default=7, help="their RNG for the joint step (7: one of the two "
                        "samples gets decoder noise, some labels are dropped)")
    args = parser.parse_args()
    unite_module, optim_module = import_official(args.checkout.resolve())
    model, official = official_model(unite_module, args.weight_seed)
    inputs = seeded_inputs(args.input_seed)
    lr_steps = list(range(0, 60 * LR_STEPS_PER_EPOCH + 1, 3))
    theirs, draws = official_outputs(model, optim_module, args.checkout.resolve(), inputs, lr_steps, args.draw_seed)
    with tempfile.TemporaryDirectory() as folder:
        cfg = compose(OUR_OVERRIDES + [f"modality.data_root={class_folders(Path(folder), SIZES['num_classes'])}"])
        recipe = build_ours(cfg)
        unmapped = load_mapped(recipe, official)
        if unmapped:
            raise RuntimeError(f"our parameters without an official counterpart: {unmapped}")
        ours = our_outputs(recipe, inputs, draws, lr_steps, cfg.trainer.max_steps, dict(cfg.trainer.lr_schedule))
    report = differences(ours, theirs)
    print("| component | max abs difference | relative to max(1, max abs official) |\n|---|---|---|")
    for name, (absolute, relative) in report.items():
        print(f"| {name} | {absolute:.2e} | {relative:.2e} |")
    failing = [name for name, (_, relative) in report.items() if relative > TOLERANCE]
    if failing:
        raise SystemExit(f"no parity for {failing}; the fixture is not written")
    fixture = {"official_commit": OFFICIAL_COMMIT, "sizes": SIZES, "weight_seed": args.weight_seed,
               "input_seed": args.input_seed, "draw_seed": args.draw_seed,
               "official_shapes": {name: list(value.shape) for name, value in official.items()},
               "weight_checksums": {name: checksum(value) for name, value in official.items()},
               "draws": compact(draws), "outputs": compact(theirs), "lr_steps": lr_steps,
               "official_unite_b": official_unite_b(unite_module)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(fixture, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e3:.0f} kB); official UNITE-B: "
          f"{fixture['official_unite_b']['trainable']:,} trainable parameters")


if __name__ == "__main__":
    main()
