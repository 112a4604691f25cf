"""Joint training entry point:  python -m core.train modality=molecule [experiment=...] [key=value ...]
Several processes (CPU: gloo, GPUs: NCCL):  torchrun --nproc_per_node=N -m core.train [key=value ...]

Reads top to bottom: build -> (resume) -> loop of optimizer steps -> final checkpoint -> evaluation.
Writes into trainer.out_dir: checkpoints/, metrics.jsonl + metrics.csv + metrics.png, samples/, summary.json.
A step draws its noise from per-sample streams (core/noise_streams.py), so the same global batch gives
the same step in one process, in N processes or with gradient accumulation.
"""
from __future__ import annotations

import itertools
import json
import math
import random
import signal
import time
from contextlib import nullcontext
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from core.build import build_modality, build_recipe, model_defining_config
from core.checkpoint import (CheckpointError, capture_rng_state, compare_configs, load_checkpoint,
                             newest_loadable_checkpoint, restore_rng_state, save_checkpoint)
from core.data_order import ResumableSampler
from core.distributed import World, all_reduce_mean, init_world, leave_world, ranks_agree
from core.compilation import compile_blocks
from core.ema import EMA
from core.evaluation import generate_and_write, reconstruction_report
from core.lr_schedule import lr_multiplier
from core.metrics_log import MetricsLog
from core.noise_streams import global_positions, stream_seeds
from core.optim import build_optimizer
from core.packing import resolve_packing, set_packing
from core.precision import auto_reason, autocast_for, compute_dtype
from core.sample import upgrade_config, upgrade_weights
from core.stages import Stage, plan_stages, stage_of_checkpoint, start_stage
from core.trainer_config import validate_trainer_config


class NonFiniteLossError(FloatingPointError):
    pass


class StopRequested(Exception):
    """Raised by a signal during the end-of-run evaluation."""


class StopRequest:
    """SIGTERM/SIGINT (pre-emption, `timeout`, Ctrl-C).

    During training they set a flag: the loop finishes its step, saves a checkpoint and exits cleanly.
    During the end-of-run evaluation (`interrupting`), when the checkpoint is already written, they raise
    StopRequested, so the evaluation ends at once instead of running on past the caller's limit."""

    def __init__(self):
        self.signal_name: str | None = None
        self.interrupting = False
        self._previous: dict = {}

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        self.signal_name = signal.Signals(signum).name
        if self.interrupting:
            raise StopRequested(self.signal_name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resume_state(cfg: DictConfig, ckpt_dir: Path, device: torch.device) -> tuple[Path, dict] | None:
    """trainer.resume: 'none', 'auto' (newest complete checkpoint in this run's folder) or a path."""
    request = str(cfg.trainer.resume)
    if request == "none":
        return None
    if request == "auto":
        return newest_loadable_checkpoint(ckpt_dir, map_location=device)
    path = Path(request)
    if not path.is_file():
        raise CheckpointError(f"trainer.resume={request!r}: no such checkpoint file")
    return path, load_checkpoint(path, map_location=device)


def steps_per_epoch(items: int, world_size: int, micro_batch: int, grad_accum: int) -> int:
    """Optimizer steps in one pass over `items` training items: each process takes an equal share in
    full micro-batches, and micro-batches left over after the last full accumulation are skipped."""
    return items // world_size // micro_batch // grad_accum


def train(cfg: DictConfig) -> dict:
    """Run one training job; returns the summary also written to summary.json."""
    stop = StopRequest()
    stop.install()
    try:
        return _train(cfg, stop)
    finally:
        stop.restore()


def _train(cfg: DictConfig, stop: StopRequest) -> dict:
    validate_trainer_config(cfg.trainer)
    tc = cfg.trainer
    world = init_world(tc.device)
    if tc.threads is not None:
        torch.set_num_threads(tc.threads)
    out_dir = Path(tc.out_dir)
    ckpt_dir = out_dir / "checkpoints"
    out_dir.mkdir(parents=True, exist_ok=True)
    if world.is_main:
        (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))

    modality = build_modality(cfg)
    train_set = modality.dataset("train")
    micro_batch = tc.batch_size // (world.size * tc.grad_accum)
    if micro_batch < 1 or tc.batch_size % (world.size * tc.grad_accum):
        raise ValueError(f"trainer.batch_size={tc.batch_size} (the global batch) does not split into {world.size} "
                         f"processes x trainer.grad_accum={tc.grad_accum} equal micro-batches")
    epoch_steps = steps_per_epoch(len(train_set), world.size, micro_batch, tc.grad_accum)
    if epoch_steps < 1:
        raise ValueError(f"the training split has {len(train_set)} items, fewer than one step of "
                         f"trainer.batch_size={tc.batch_size}; lower the batch size or use more data")
    seed_everything(tc.seed)  # the same initial weights in every process (and as a one-process run)
    recipe = build_recipe(cfg, modality).to(world.device)
    ema = EMA(recipe, tc.ema_decay, tc.ema_warmup)
    packing, packing_why = resolve_packing(tc.packing, world.device, recipe)
    set_packing(recipe, packing)
    if tc.compile:
        compile_blocks(recipe)
    if world.is_main:
        why = f": {auto_reason(world.device)}" if tc.precision == "auto" else ""
        print(f"compute dtype {compute_dtype(world.device, tc.precision)} (trainer.precision={tc.precision}{why})")
        if tc.packing == "auto":
            print(f"packing {packing} (trainer.packing=auto: {packing_why})")
    seed_everything(tc.seed + world.rank)  # per-process randomness of the data side (e.g. image flips)
    sampler = ResumableSampler(len(train_set), tc.seed, shuffle=True, rank=world.rank, world_size=world.size)
    defining = model_defining_config(cfg)
    time_limit = None if tc.time_limit_minutes is None else 60.0 * tc.time_limit_minutes
    stages = plan_stages(recipe, tc.max_steps, time_limit)  # core/stages.py; UNITE: one stage, 'joint'
    if tc.stop_after_stage is not None and tc.stop_after_stage not in recipe.stages:
        raise ValueError(f"trainer.stop_after_stage={tc.stop_after_stage!r}: this recipe's stages are {recipe.stages}")

    def begin_stage(stage: Stage, fresh: bool):
        """The stage's optimiser (its trained parameters only), LR schedule over its steps, and model wrapper."""
        recipe.set_stage(stage.name)
        if fresh:  # not when resuming inside the stage: the checkpoint holds what this did
            start_stage(recipe, ema.shadow, stage.name, modality, train_set, tc.batch_size, world.device, tc.seed)
        stage_optimizer = build_optimizer(recipe, tc.optimizer, tc.lr, tc.weight_decay, tc.betas, tc.eps,
                                          tc.muon_momentum, tc.muon_split, tc.fused_adamw, tc.muon_ns_dtype)
        multiplier = lr_multiplier(OmegaConf.to_container(tc.lr_schedule), epoch_steps, stage.steps)
        stage_schedulers = [torch.optim.lr_scheduler.LambdaLR(o, multiplier) for o in stage_optimizer.optimizers]
        wrapped = recipe
        if world.size > 1:  # rebuilt per stage: DDP registers the parameters that require a gradient
            wrapped = DistributedDataParallel(recipe, device_ids=[world.device.index] if world.device.type == "cuda"
                                              else None)
        recipe.train()
        return stage_optimizer, stage_schedulers, wrapped

    step, epoch, position = 0, 0, 0
    stage, stage_step, fresh_stage = stages[0], 0, True
    resumed = resume_state(cfg, ckpt_dir, world.device)
    if resumed is not None:
        path, state = resumed
        # a checkpoint written before a model key existed resumes with the value that rebuilds it (core.sample)
        saved_config = upgrade_config(OmegaConf.create(state["config"]))
        weights, ema_weights = (upgrade_weights(saved_config, state[key]) for key in ("model", "ema"))
        differences = compare_configs(model_defining_config(saved_config), defining)
        if differences:
            raise CheckpointError(f"checkpoint {path} was trained with a different model config: "
                                  + "; ".join(differences))
        recipe.load_state_dict(weights)
        ema.shadow.load_state_dict(ema_weights)
        stage, stage_step = stage_of_checkpoint(state, stages)
        fresh_stage = stage_step >= stage.steps and stage.index + 1 < len(stages)  # it ended: start the next
        if fresh_stage:
            stage, stage_step = stages[stage.index + 1], 0
        step, epoch, position = state["step"], state["epoch"], state["position"]
        restore_rng_state(state["rng"][world.rank] if isinstance(state["rng"], list) else state["rng"])
        print(f"resumed from {path} at step {step} (epoch {epoch}, item {position}), stage {stage.name!r} "
              f"step {stage_step} of {stage.steps}")
    optimizer, schedulers, model = begin_stage(stage, fresh_stage)
    if resumed is not None and not fresh_stage:
        optimizer.load_state_dict(state["optimizer"])
        for scheduler, scheduler_state in zip(schedulers, state["schedulers"]):
            scheduler.load_state_dict(scheduler_state)

    def checkpoint_now() -> Path | None:
        if not world.is_main:
            return None
        payload = {"model": recipe.state_dict(), "ema": ema.shadow.state_dict(), "optimizer": optimizer.state_dict(),
                   "schedulers": [s.state_dict() for s in schedulers], "step": step, "epoch": epoch,
                   "position": position, "rng": capture_rng_state(), "model_config": defining,
                   "config": OmegaConf.to_container(cfg, resolve=True), "stage": stage.name, "stage_step": stage_step}
        return save_checkpoint(payload, ckpt_dir, step, tc.keep_checkpoints, stage.checkpoint_tag)

    log = MetricsLog(out_dir, enabled=world.is_main)
    start_time, process_start = time.monotonic(), time.process_time()
    # trainer.time_limit_clock: wall time, or this process's CPU time (fair budgets on a shared machine)
    budget_clock = time.monotonic if tc.time_limit_clock == "wall" else time.process_time
    budget_start = budget_clock()  # of the current stage
    checkpoint_interval = None if tc.checkpoint_every_minutes is None else 60.0 * tc.checkpoint_every_minutes
    checkpoint_steps = set(tc.checkpoint_steps)  # looked up every step
    last_checkpoint_time = budget_start
    progress = tqdm(total=tc.max_steps, initial=step, disable=not world.is_main, desc="train", dynamic_ncols=True)
    running: dict[str, torch.Tensor] = {}
    samples_since_log, log_clock = 0, time.monotonic()
    skipped_steps = 0
    stop_reason = "max_steps"
    stage_records: list[dict] = []
    done = stage_step >= stage.steps  # a finished run resumed

    while not done:
        sampler.set_position(epoch, position)
        # A private generator: creating a loader iterator draws a seed, which must not consume the global
        # RNG (a resumed run creates its iterator at a different step than an uninterrupted one).
        loader = DataLoader(train_set, batch_size=micro_batch, sampler=sampler, collate_fn=modality.collate,
                            num_workers=tc.num_workers, drop_last=True, pin_memory=world.device.type == "cuda",
                            generator=torch.Generator().manual_seed(tc.seed * 7919 + epoch))
        # Only whole accumulation groups: the micro-batches left at the epoch's end would otherwise add
        # their gradients (and logged losses) to the first step of the next epoch.
        usable = len(loader) - len(loader) % tc.grad_accum
        micro = 0
        step_parts: dict[str, torch.Tensor] = {}  # on the device: no host sync per micro-batch
        for batch in itertools.islice(loader, usable):
            batch = modality.batch_to(batch, world.device)
            seeds = stream_seeds(tc.seed, step, global_positions(world.size, world.rank, micro % tc.grad_accum,
                                                                 micro_batch))
            micro += 1
            last_micro = micro % tc.grad_accum == 0
            sync = nullcontext() if (last_micro or world.size == 1) else model.no_sync()
            with sync, autocast_for(world.device, tc.precision):
                loss, parts = model(batch, seeds)
                (loss / tc.grad_accum).backward()
            for key, value in parts.items():
                step_parts[key] = step_parts.get(key, 0.0) + value.float() / tc.grad_accum
            position += micro_batch
            if not last_micro:
                continue
            grad_norm = torch.nn.utils.clip_grad_norm_(recipe.parameters(), tc.grad_clip)
            if not bool(torch.isfinite(step_parts["loss"]) & torch.isfinite(grad_norm)):  # one sync per step
                if tc.nonfinite == "stop":
                    raise NonFiniteLossError(
                        f"non-finite loss or gradient at step {step + 1} (loss {float(step_parts['loss'])}, grad norm "
                        f"{float(grad_norm)}); the last good checkpoint in {ckpt_dir} is untouched. "
                        f"Set trainer.nonfinite=skip to skip such steps.")
                optimizer.zero_grad(set_to_none=True)
                skipped_steps += 1
                step_parts = {}
                continue
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            for scheduler in schedulers:
                scheduler.step()
            step += 1
            stage_step += 1
            ema.update(recipe, stage_step)  # warm-up per stage: a stage's new parts start from their init
            samples_since_log += tc.batch_size
            progress.update(1)
            step_parts["grad_norm"] = grad_norm.detach().float()
            for key, value in step_parts.items():
                running[key] = running.get(key, 0.0) + value
            step_parts = {}

            # a signal stops the run, the stage's time budget ends the stage; every process agrees on both at
            # the same step (clocks and signals differ between processes)
            flags = torch.tensor([float(stop.signal_name is not None),
                                  float(stage.seconds is not None and budget_clock() - budget_start > stage.seconds)])
            if world.size > 1:
                flags = all_reduce_mean(flags.to(world.device), world).cpu()
            if float(flags[0]) > 0:
                stop_reason = f"signal {stop.signal_name}" if stop.signal_name else "another process stopped"
            stage_over = stage_step >= stage.steps or float(flags[1]) > 0
            last_step = stage_over or stop_reason != "max_steps"
            if step % tc.log_every == 0 or last_step:  # the last step is always logged
                steps_in_window = samples_since_log // tc.batch_size  # since the last row (a stage end logs too)
                row = {k: float(all_reduce_mean(v / steps_in_window, world)) for k, v in running.items()}
                elapsed = time.monotonic() - log_clock
                row.update(step=step, epoch=epoch, stage=stage.name, stage_step=stage_step,
                           lr=schedulers[0].get_last_lr()[0],
                           samples_per_second=samples_since_log / max(elapsed, 1e-9),
                           wall_seconds=time.monotonic() - start_time,
                           process_seconds=time.process_time() - process_start, skipped_steps=skipped_steps)
                log.write(row)
                progress.set_postfix({key: f"{row[key]:.4f}" for key in ("loss", "rec_loss", "gen_loss")
                                      if math.isfinite(row.get(key, math.nan))})
                running, samples_since_log, log_clock = {}, 0, time.monotonic()
            if step % tc.checkpoint_every == 0 or step in checkpoint_steps \
                    or (stage_over and stage.index + 1 < len(stages)):
                checkpoint_now()  # always at the end of a stage: the next one starts from it
                last_checkpoint_time = budget_clock()
            elif checkpoint_interval is not None and budget_clock() - last_checkpoint_time >= checkpoint_interval:
                checkpoint_now()  # a point of a learning curve against training time
                last_checkpoint_time = budget_clock()
            if stage_over and stop_reason == "max_steps":
                stage_records.append({"stage": stage.name, "steps": stage_step, "last_step": step,
                                      "stop_reason": "max_steps" if stage_step >= stage.steps else "time_limit",
                                      "budget_seconds": budget_clock() - budget_start})
                if stage.index + 1 == len(stages):
                    stop_reason = stage_records[-1]["stop_reason"]
                    done = True
                elif tc.stop_after_stage == stage.name:
                    stop_reason = f"stop_after_stage {stage.name}"
                    done = True
                else:
                    stage, stage_step = stages[stage.index + 1], 0
                    optimizer, schedulers, model = begin_stage(stage, fresh=True)
                    budget_start = last_checkpoint_time = budget_clock()
            if done or stop_reason != "max_steps":
                done = True
                break
        else:  # the epoch ran out
            epoch, position = epoch + 1, 0
    progress.close()
    final_checkpoint = checkpoint_now()
    summary = {"steps": step, "stop_reason": stop_reason, "wall_seconds": time.monotonic() - start_time,
               "skipped_steps": skipped_steps, "checkpoint": str(final_checkpoint) if final_checkpoint else None,
               "parameters": sum(p.numel() for p in recipe.parameters()),
               "trained_parameters": recipe.trained_parameter_count(), "processes": world.size,
               "stage": stage.name, "stages": stage_records}
    generator_trained = stage.index + 1 == len(stages)  # the last stage of every recipe trains the generator
    if world.size > 1:
        summary["ranks_identical"] = ranks_agree([recipe, ema.shadow], world)
        if world.is_main:
            print(f"{world.size} processes, parameters and EMA after step {step}: "
                  f"{'identical on every rank' if summary['ranks_identical'] else 'DIFFERENT between ranks'}")
    if stop_reason.startswith("signal"):
        print(f"stopped by {stop_reason} at step {step}; checkpoint {final_checkpoint}")
    elif world.is_main and tc.evaluate_at_end:
        summary.update(evaluate_or_stop(cfg, modality, ema.shadow, world, out_dir, stop, generator_trained))
        log.write({"step": step, **{f"final/{k}": v for k, v in summary.items() if isinstance(v, (int, float))}})
    if world.is_main:
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        plot = log.plot()
        if plot is not None:
            print(f"loss and metrics plot: {plot}")
    return summary


def evaluate_or_stop(cfg: DictConfig, modality, model, world: World, out_dir: Path, stop: StopRequest,
                     generate: bool = True) -> dict:
    """evaluate_run, ended at once by SIGTERM/SIGINT (the final checkpoint is already written)."""
    if stop.signal_name is not None:  # arrived while the final checkpoint was written
        return {"stop_reason": f"signal {stop.signal_name} before evaluation"}
    stop.interrupting = True
    try:
        return evaluate_run(cfg, modality, model, world, out_dir, generate)
    except StopRequested as request:
        print(f"end-of-run evaluation stopped by signal {request}; the final checkpoint is complete")
        return {"stop_reason": f"signal {request} during evaluation"}
    finally:
        stop.interrupting = False


def evaluate_run(cfg: DictConfig, modality, model, world: World, out_dir: Path, generate: bool = True) -> dict:
    """EMA weights: reconstruction on the evaluation split, then generated samples written to files (not before
    the generator is trained: a run stopped after a tokenizer stage)."""
    tc, sc = cfg.trainer, cfg.sampler
    report = reconstruction_report(model, modality, tc.eval_split, tc.eval_batches, tc.eval_batch_size, world.device)
    if not generate:
        return {**{f"reconstruction/{k}": v for k, v in report.items()},
                "generation": "skipped: the generator stage has not run"}
    generated = generate_and_write(model, modality, sc, sc.num_samples, out_dir / "samples", world.device, tc.seed)
    return {**{f"reconstruction/{k}": v for k, v in report.items()},
            **{f"generation/{k}": v for k, v in generated.items()}}


@hydra.main(config_path="../configs", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    summary = train(cfg)
    leave_world()
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
