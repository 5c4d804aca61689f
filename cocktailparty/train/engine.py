"""The training engine behind ``cocktail train``: the papers' recipe, resumable to the bit.

One run is one folder::

    RUN_DIR/config.yaml                  the resolved config (every default filled in)
    RUN_DIR/log.csv, RUN_DIR/steps.csv   per epoch and per ``log_every`` steps (logs.py)
    RUN_DIR/best.safetensors             the model with the best validation SI-SNRi
    RUN_DIR/checkpoints/step-00001234/   the newest checkpoints (state.py)

The parts: the ``training:`` and ``data:`` sections and their defaults (config.py), the
datasets and each epoch's batches (data.py), what a model may define to take part (hooks.py)
and the loss built from it (trainee.py), the lr schedule, early stopping and optimizer
(schedules.py), processes and process-wide state (distributed.py), the CUDA-graph step
(cuda_graph.py), stop signals (signals.py). This module holds the :class:`Trainer`, which runs them.

The fast path: ``training.compile`` and ``training.cuda_graph`` at ``auto`` (their default) are
decided when the trainer starts, for its device (config.py's ``resolve_fast_path``: both on CUDA
where the run allows the graph, both off on a CPU), and logged. A compile that fails, when called
or in the first compiled step, is warned about once and dropped; the step is taken again without
it (still captured, where the graph is on), from the state before the attempt.

Exact resume: a checkpoint holds the data position, every schedule's state, the optimizer's
and the random streams of every process. The epoch's order is a permutation drawn from
``(seed, epoch)`` and every item is a function of ``(seed, epoch, index)``, so a resumed run
sees exactly the batches the uninterrupted one would have, with any number of DataLoader
workers. On CPU a resumed run ends with bit-identical weights; on GPU, as far as the kernels
are deterministic (``training.deterministic: true`` asks torch for deterministic algorithms).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import signal
import time
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from ..core import checkpoint
from ..core.config import apply_overrides, load_config
from ..core.errors import CocktailError, describe_error
from ..core.progress import Bar
from ..eval.metrics.permutations import si_snri
from ..models import ARCHITECTURES, build_model
from .config import AUTO, DataConfig, TrainingConfig, resolve_config, resolve_fast_path
from .config import write_config
from .cuda_graph import CaptureFailed, GraphedStep
from .data import EpochBatches, build_datasets, epoch_order, make_loader, to_device
from .distributed import Distributed, agree, seed_rank, set_process_state, training_device
from .hooks import TrainingInfo, auto_training_precision, find_hooks, validation_estimates
from .logs import CsvLog, fmt
from .schedules import Recipe, build_optimizer
from .signals import StopSignals
from .state import (BEST_FILE, MODEL_FILE, StepSnapshot, capture_rng, checkpoint_dirs, flatten_optimizer,
                    latest_checkpoint, load_init_weights, prune_checkpoints, remove_partial_writes, restore_rng,
                    under, unflatten_optimizer, write_checkpoint)
from .state import no_checkpoint_error
from .trainee import Trainee

log = logging.getLogger("cocktailparty")

# The exit status of a run that --stop-after ended: resumable, not done (sysexits' EX_TEMPFAIL,
# "try again later").
EXIT_SLOT_ENDED = 75


class Trainer:
    """One training run in ``run_dir``, fresh or resumed (see the module docstring).

    Args:
        cfg: a config as :func:`~cocktailparty.train.config.resolve_config` returns it.
        run_dir: the run folder.
        resume: continue from the newest valid checkpoint of ``run_dir``.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``; default CUDA when present.
        progress: show progress bars on stderr: steps of each epoch (loss, lr, samples/s every
            ``log_every`` steps) and validation. ``cocktail train`` asks
            :func:`~cocktailparty.core.progress.progress_enabled` (a terminal, no ``-q``).
        stop_at: a ``time.monotonic()`` time after which the next step ends this process's
            training as a signal would (saved mid-epoch, resumable): the end of a fixed-length
            slot. Unlike ``training.time_budget_s`` it is not part of the run.
    """

    def __init__(self, cfg: dict, run_dir: str | os.PathLike, *, resume: bool = False,
                 device: Optional[str] = None, progress: bool = True, source: str = "config",
                 stop_at: Optional[float] = None):
        self.cfg, self.run_dir, self.progress, self.stop_at = cfg, Path(run_dir), progress, stop_at
        self.t = TrainingConfig(**cfg["training"])
        self.data = DataConfig(**cfg["data"])
        self.dist = Distributed.from_env()
        self.device = training_device(device, self.dist)
        if self.dist.enabled and not torch.distributed.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            torch.distributed.init_process_group(backend)
        if self.t.batch_size % self.dist.world:
            raise CocktailError(f"{source}: training.batch_size {self.t.batch_size} (the global batch) "
                                f"must be a multiple of the {self.dist.world} processes")
        set_process_state(self.t)
        self.seed = int(self.t.seed)

        model_cfg = dict(cfg["model"])
        architecture = model_cfg.pop("architecture")
        self.model = build_model(architecture, **model_cfg)
        self.hooks = find_hooks(self.model)
        if self.t.activation_checkpointing:
            if self.hooks.set_activation_checkpointing is None:
                able = sorted(n for n, (_, cls) in ARCHITECTURES.items() if hasattr(cls, "set_activation_checkpointing"))
                raise CocktailError(f"{source}: training.activation_checkpointing is not implemented for "
                                    f"{architecture} (only for models with set_activation_checkpointing: "
                                    f"{', '.join(able) or 'none'})")
            self.hooks.set_activation_checkpointing(True)
        self.sample_rate = int(self.model.config.sample_rate)
        self.num_sources = int(getattr(self.model.config, "num_sources", 2))
        self.train_set, self.valid_set, speakers = build_datasets(self.data, self.sample_rate, self.num_sources,
                                                                  self.seed, source)
        if self.t.init_from and not resume:
            load_init_weights(self.model, Path(self.t.init_from), architecture)
        self.model.to(self.device)
        # From here on self.t.compile and self.t.cuda_graph are booleans and self.t.precision is
        # no longer auto: what the step uses now (a failed compile or capture turns them off);
        # self.cfg keeps what the config asked.
        fast_path = resolve_fast_path(self.t, self.data, str(self.device), self.dist.world, source,
                                      auto_training_precision(self.model))
        if self.dist.main:
            log.info("%s", fast_path)
        # torch.compile compiles on the first call, so until one step has run compiled a compile
        # failure is still to be expected (see _train_step).
        self.compile_unproven = False
        if self.t.compile:
            self._compile()
        objective = None
        if self.hooks.training_objective is not None:
            info = TrainingInfo(speakers, self.num_sources, self.sample_rate, self.t.stage,
                                dict(self.t.objective), self.device)
            objective = self.hooks.training_objective(info)
            if objective is not None:
                objective.to(self.device)
        self.trainee = Trainee(self.model, objective, self.hooks.training_step_loss, self.t.loss, self.t.pit,
                               float(self.t.high_band_weight), float(self.t.high_band_from)).to(self.device)
        self.params = [p for p in self.trainee.parameters() if p.requires_grad]
        if not self.params:
            raise CocktailError("nothing to train: every parameter is frozen (check training.stage)")
        self.optimizer = build_optimizer(self.params, self.t)
        self.recipe = Recipe(self.optimizer, self.t.lr_schedule, self.t.early_stop_patience_epochs)
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.t.precision)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.t.precision == "fp16")
        self.wrapped: nn.Module = self.trainee
        self.graphed: Optional[GraphedStep] = None
        if self.dist.enabled:
            self.wrapped = nn.parallel.DistributedDataParallel(
                self.trainee, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=bool(self.t.ddp_find_unused_parameters))
            # Dropout should differ between processes; the initial weights (broadcast by DDP) not.
            if self.dist.rank:
                seed_rank(self.seed, self.dist.rank)

        # Position and running statistics (all saved in checkpoints).
        self.step = 0
        self.epoch = 0
        self.batch = 0  # next batch of the current epoch
        self.early_stopped = False
        self.sums: dict[str, float] = {}
        self.count = 0
        self.window: dict[str, float] = {}
        self.window_count = 0
        # Wall-clock throughput of the steps since the last steps.csv row (not saved: after a
        # resume it restarts with the steps this process ran).
        self.clock_start, self.clock_steps = time.perf_counter(), 0
        self.skipped = 0
        self.elapsed = 0.0
        self.signals = StopSignals(announce=self.dist.main)

        self.n_batches = len(self.train_set) // self.t.batch_size
        if self.t.max_steps_per_epoch:
            self.n_batches = min(self.n_batches, int(self.t.max_steps_per_epoch))
        if self.n_batches < 1:
            raise CocktailError(f"{source}: the training set has {len(self.train_set)} items, fewer than "
                                f"one batch of {self.t.batch_size}")

        self.epoch_log = CsvLog(self.run_dir / "log.csv")
        self.step_log = CsvLog(self.run_dir / "steps.csv")
        if resume:
            self._resume()
        elif self.dist.main:
            self._start_fresh()

    # --- set-up -------------------------------------------------------------------------

    def _compile(self) -> None:
        try:
            self.model.compile()  # in place: parameter names, so checkpoints, are unchanged
        except Exception as err:
            self._train_without_compile(err)
            return
        self.compile_unproven = True

    def _train_without_compile(self, err: Exception) -> None:
        """A compile that fails costs one warning, never the run: the model runs eagerly on."""
        # A failed capture (CaptureFailed) names what made it fail as its cause.
        log.warning("torch.compile failed (%s); training goes on without it (--set training.compile=false "
                    "skips the attempt)", describe_error(err.__cause__ or err))
        uncompile(self.model)
        self.t.compile = False
        self.compile_unproven = False

    def _start_fresh(self) -> None:
        if checkpoint_dirs(self.run_dir):
            raise CocktailError(f"{self.run_dir}: already holds a run with checkpoints; continue it with "
                                f"cocktail train --resume {self.run_dir}, or choose another --out")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for name in ("log.csv", "steps.csv", BEST_FILE):
            (self.run_dir / name).unlink(missing_ok=True)
        self.epoch_log, self.step_log = CsvLog(self.run_dir / "log.csv"), CsvLog(self.run_dir / "steps.csv")
        write_config(self.run_dir / "config.yaml", self.cfg)

    def _resume(self) -> None:
        folder, state, tensors, weights = latest_checkpoint(self.run_dir)
        try:
            self.model.load_state_dict(weights)
        except RuntimeError as err:
            raise CocktailError(f"{folder / MODEL_FILE}: does not fit the model of {self.run_dir / 'config.yaml'} "
                                f"({str(err).splitlines()[0]})") from None
        if self.trainee.objective is not None:
            self.trainee.objective.load_state_dict(under(tensors, "objective/"))
        self.optimizer.load_state_dict(unflatten_optimizer(tensors, state["optimizer"], self.optimizer))
        self.recipe.load_state_dict(state["recipe"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch, self.batch = state["step"], state["epoch"], state["batch"]
        self.early_stopped = state["early_stopped"]
        self.sums, self.count = state["sums"], state["count"]
        self.window, self.window_count = state["window"], state["window_count"]
        self.skipped, self.elapsed = state["skipped"], state["elapsed"]
        if state["n_batches"] != self.n_batches and self.batch:
            log.warning("the epoch length changed since this checkpoint (%d -> %d batches)",
                        state["n_batches"], self.n_batches)
        rng = state["rng"]
        if len(rng) == self.dist.world:
            restore_rng(rng[self.dist.rank], under(tensors, f"rng/{self.dist.rank}/"), self.device)
        else:
            log.warning("the run was saved by %d process(es) and resumes on %d: random streams are "
                        "re-seeded, so it will not repeat the uninterrupted run bit for bit", len(rng), self.dist.world)
            torch.manual_seed(self.seed + 7919 * (self.step + 1) + self.dist.rank)
        if self.dist.main:
            remove_partial_writes(self.run_dir)
            self.epoch_log.truncate_after(self.step)
            self.step_log.truncate_after(self.step)
        self.recipe.step_done(self.step)
        log.info("resuming %s from %s (epoch %d, batch %d of %d, step %d)", self.run_dir, folder.name,
                 self.epoch + 1, self.batch, self.n_batches, self.step)

    # --- the loop -----------------------------------------------------------------------

    @property
    def stop_signal(self) -> Optional[int]:
        """The signal (SIGINT, SIGTERM) that stopped this run, or None."""
        return self.signals.received

    def fit(self) -> str:
        """Train until ``epochs``, early stopping, the time budget or a stop signal. Returns
        ``"finished"``, ``"early_stopped"``, ``"budget_spent"`` (the partial epoch validated;
        resumable), ``"stopped"`` (a signal or ``stop_at``; resumable) or ``"already_finished"``."""
        if not self.finished:
            self._preflight()
        if self.finished:
            log.info("%s: this run already finished (epoch %d, step %d%s); nothing to do", self.run_dir,
                     self.epoch, self.step, ", early stop" if self.early_stopped else
                     "; --set training.epochs=N trains on")
            return "already_finished"
        with self.signals.installed():
            return self._loop()

    def _preflight(self) -> None:
        """Score one validation batch before training, so that a model/data mismatch shows up
        now and not after the first epoch (the random streams are left untouched)."""
        try:
            self.validate(max_batches=1)
        except CocktailError as err:
            hint = (" (data.enrollment_seconds adds enrollments to mixtures from a corpus)"
                    if "enroll" in str(err) and not self.data.enrollment_seconds else "")
            raise CocktailError(f"the model fails on the first validation batch: {err}{hint}") from None

    @property
    def finished(self) -> bool:
        return self.early_stopped or self.epoch >= self.t.epochs

    def _loop(self) -> str:
        outcome = "finished"
        while not self.finished:
            if self._train_epoch():
                if self._agree(self._budget_spent()) and not self._agree(self.signals.received is not None):
                    # The budget ends this epoch early: validate it, so the run has a best model.
                    self._end_epoch()
                    self._save()
                    if self.dist.main:
                        best = "n/a" if self.recipe.best is None else f"{self.recipe.best:.2f} dB"
                        log.info("time budget spent at step %d; best valid SI-SNRi %s; model: %s; --resume "
                                 "with a larger training.time_budget_s trains on", self.step, best,
                                 self.run_dir / BEST_FILE)
                    return "budget_spent"
                return self._stopped()
            if self._end_epoch():
                outcome = "early_stopped"
                self.early_stopped = True
            self._save()
            if not self.finished and self._agree(self.signals.received is not None or self.slot_ended):
                return self._stopped()
        if self.dist.main:
            best = self.recipe.best
            log.info("%s after %d epochs (%d steps); best valid SI-SNRi %s; model: %s", outcome.replace("_", " "),
                     self.epoch, self.step, f"{best:.2f} dB (epoch {self.recipe.best_epoch})" if best is not None
                     else "n/a", self.run_dir / BEST_FILE)
        return outcome

    def _stopped(self) -> str:
        self._save()
        if self.dist.main:
            why = signal.Signals(self.signals.received).name if self.signals.received else "--stop-after"
            log.info("stopped at step %d (epoch %d, batch %d of %d; %s); continue with: cocktail train --resume %s",
                     self.step, self.epoch + 1, self.batch, self.n_batches, why, self.run_dir)
        return "stopped"

    @property
    def slot_ended(self) -> bool:
        """Whether the ``stop_at`` time has come."""
        return self.stop_at is not None and time.monotonic() >= self.stop_at

    def _budget_spent(self, running: float = 0.0) -> bool:
        """Whether the training time (``elapsed`` plus ``running`` seconds not yet added to
        it) has reached ``training.time_budget_s``."""
        budget = self.t.time_budget_s
        return budget is not None and self.elapsed + running >= float(budget)

    def _agree(self, flag: bool) -> bool:
        return agree(flag, self.dist, self.device)

    def _train_epoch(self) -> bool:
        """Run the rest of the current epoch; True when a stop signal asks to save and exit."""
        t = self.t
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(self.epoch)
        order = epoch_order(self.seed, self.epoch, len(self.train_set), bool(t.shuffle))
        batches = EpochBatches(order, t.batch_size, self.batch, self.n_batches, self.dist.rank, self.dist.world)
        loader = make_loader(self.train_set, batches, int(t.num_workers), self.seed * 100003 + self.epoch,
                             self.device.type == "cuda")
        bar = self._bar(total=self.n_batches, initial=self.batch, desc=f"epoch {self.epoch + 1}/{t.epochs}")
        started = time.monotonic()
        try:
            for batch in loader:
                terms = self._train_step(batch)
                self.signals.keep_handlers(self.step + 1)
                self.step += 1
                self.recipe.step_done(self.step)
                self.batch += 1
                stop = self._accumulate(terms, self._budget_spent(time.monotonic() - started) or self.slot_ended)
                if bar is not None:
                    bar.update(1)
                if self.step % t.log_every == 0:
                    self._log_window(bar)
                    for line in self.signals.new_foreign_handlers():
                        log.info("step %d: %s", self.step, line)
                if stop:
                    return True
                if self.step % t.checkpoint_every == 0 and self.batch < self.n_batches:
                    self.elapsed += time.monotonic() - started
                    started = time.monotonic()
                    self._save()
        finally:
            self.elapsed += time.monotonic() - started
            if bar is not None:
                bar.close()
        return False

    def _bar(self, **kwargs):
        if not (self.progress and self.dist.main):
            return None
        return Bar(enabled=True, unit="step", leave=False, **kwargs)

    def _autocast(self, cache: bool = True):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype, cache_enabled=cache)

    def _train_step(self, batch: dict) -> dict[str, torch.Tensor]:
        if not self.compile_unproven:
            return self._step(batch)
        # The first compiled step (or CUDA graph capture of it) is where compiling happens and
        # fails: undo what the attempt changed and take the same step again without compile.
        before = StepSnapshot(self.trainee, self.optimizer, self.device)
        try:
            out = self._step(batch)
        except Exception as err:
            before.restore()
            self._train_without_compile(err)
            out = self._step(batch)
        self.compile_unproven = False
        return out

    def _step(self, batch: dict) -> dict[str, torch.Tensor]:
        self.wrapped.train()
        if self.t.cuda_graph and self.graphed is None:
            self.graphed = self._capture(batch)
        if self.graphed is None:
            return self._eager_step(batch)
        out = self.graphed(batch)
        if not torch.isfinite(out["grad_norm"]):  # a host sync, as _accumulate's that follows
            self._count_non_finite("gradients zeroed")
        return out

    def _eager_step(self, batch: dict) -> dict[str, torch.Tensor]:
        batch = to_device(batch, self.device)
        with self._autocast():
            terms = self.wrapped(batch)
        loss = terms["loss"]
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        clip = self.t.grad_clip_norm
        norm = nn.utils.clip_grad_norm_(self.params, float(clip) if clip else float("inf"))
        if self.scaler.is_enabled():
            self.scaler.step(self.optimizer)  # skips the step itself on inf/nan gradients
            self.scaler.update()
        elif torch.isfinite(norm):
            self.optimizer.step()
        else:
            # A non-finite gradient would poison Adam's moments for good; skip this batch.
            self._count_non_finite("batch skipped")
        out = {k: v.detach().float() for k, v in terms.items()}
        out["grad_norm"] = norm.detach().float()
        return out

    def _capture(self, batch: dict) -> Optional[GraphedStep]:
        """The step captured as a CUDA graph; None when capture failed under training.cuda_graph
        auto (warned once; eager from then on). An explicit true, or a capture with a compiled
        model not yet proven (_train_step retries it without compile), raises instead."""
        try:
            return GraphedStep(self, batch)
        except CaptureFailed as err:
            if self.compile_unproven or self.cfg["training"]["cuda_graph"] != AUTO:
                raise
            log.warning("the training step could not be captured as a CUDA graph (%s); training goes on without "
                        "it (--set training.cuda_graph=false skips the attempt)", describe_error(err.__cause__ or err))
            # The optimizer stays capturable (its step count on the GPU): eagerly that costs little.
            self.t.cuda_graph = False
            return None

    def _count_non_finite(self, action: str) -> None:
        self.skipped += 1
        log.warning("step %d: non-finite gradient norm; %s (%d so far)", self.step + 1, action, self.skipped)

    def _accumulate(self, terms: dict[str, torch.Tensor], stop: bool = False) -> bool:
        """Add a step's terms to the epoch and window sums (averaged over processes); returns
        whether any process received a stop signal or asks to ``stop``."""
        names = sorted(terms)
        values = torch.stack([terms[n].reshape(()) for n in names] + [
            torch.tensor(float(stop or self.signals.received is not None), device=terms["loss"].device)])
        if self.dist.enabled:
            torch.distributed.all_reduce(values)
            values = values / self.dist.world  # the flag stays > 0 when any process set it
        numbers = values.cpu().tolist()
        for name, value in zip(names, numbers[:-1]):
            self.sums[name] = self.sums.get(name, 0.0) + value
            self.window[name] = self.window.get(name, 0.0) + value
        self.count += 1
        self.window_count += 1
        self.clock_steps += 1
        return numbers[-1] > 0

    def _log_window(self, bar) -> None:
        means = {k: v / max(1, self.window_count) for k, v in self.window.items()}
        lr = self.optimizer.param_groups[0]["lr"]
        now = time.perf_counter()
        samples_per_s = self.clock_steps * self.t.batch_size / max(now - self.clock_start, 1e-9)
        self.clock_start, self.clock_steps = now, 0
        if self.dist.main:
            # A model may report numbers about itself (e.g. TDANet's attention logit gain).
            diagnostics = self.hooks.diagnostics()
            self.step_log.write({"step": self.step, "epoch": self.epoch + 1, "lr": fmt(lr),
                                 **{k: fmt(v) for k, v in sorted(means.items())},
                                 **{k: fmt(v) for k, v in sorted(diagnostics.items())},
                                 "samples_per_s": f"{samples_per_s:.1f}"})
            if bar is not None:
                bar.set_postfix({"loss": f"{means.get('loss', float('nan')):.3f}", "lr": f"{lr:.2e}",
                                 "samples/s": f"{samples_per_s:.1f}"})
        self.window, self.window_count = {}, 0

    def _end_epoch(self) -> bool:
        """Validate, step the schedules, log, save; True when early stopping ends the run."""
        t = self.t
        epoch = self.epoch + 1  # the epoch just finished, counted from 1
        lr = self.optimizer.param_groups[0]["lr"]
        score, new_best, stop = None, False, False
        if epoch % t.valid_every == 0 or epoch == t.epochs:
            score = self.validate()
            new_best, stop = self.recipe.validated(score, epoch)
            if new_best and self.dist.main:
                checkpoint.save(self.model, self.run_dir / BEST_FILE,
                                {"training": {"epoch": epoch, "step": self.step, "valid_si_snri": score}})
        self.recipe.epoch_done()
        means = {k: v / max(1, self.count) for k, v in sorted(self.sums.items())}
        if self.dist.main:
            self.epoch_log.write({
                "epoch": epoch, "step": self.step, "lr": fmt(lr),
                **{f"train_{k}": fmt(v) for k, v in means.items()},
                "valid_si_snri": fmt(score) if score is not None else "",
                "best_valid_si_snri": fmt(self.recipe.best) if self.recipe.best is not None else "",
                "elapsed_s": f"{self.elapsed:.1f}",
            })
            valid = (f"valid SI-SNRi {score:.2f} dB{' (new best)' if new_best else ''}"
                     if score is not None else "no validation")
            new_lr = self.optimizer.param_groups[0]["lr"]
            lr_text = f"lr {lr:.3g}" + (f" -> {new_lr:.3g}" if new_lr != lr else "")
            log.info("epoch %d/%d  step %d  %s  loss %.3f  %s", epoch, t.epochs, self.step, lr_text,
                     means.get("loss", float("nan")), valid)
        self.epoch += 1
        self.batch = 0
        self.sums, self.count = {}, 0
        if stop and self.dist.main:
            log.info("early stop: no new best validation SI-SNRi in %d validations", self.recipe.bad)
        return stop

    @torch.no_grad()
    def validate(self, max_batches: Optional[int] = None) -> float:
        """Mean SI-SNRi (dB) over the validation mixtures (sources averaged per mixture)."""
        t, d = self.t, self.data
        model = self.model
        was_training = model.training
        model.eval()
        if hasattr(self.valid_set, "set_epoch"):
            self.valid_set.set_epoch(0)  # the same validation mixtures every epoch
        n = len(self.valid_set)
        if d.valid_max_items:
            n = min(n, int(d.valid_max_items))
        fixed = d.valid_segment_seconds is not None
        size = int(t.valid_batch_size or (max(1, t.batch_size // self.dist.world) if fixed else 1))
        mine = list(range(self.dist.rank, n, self.dist.world))
        batches = [mine[i:i + size] for i in range(0, len(mine), size)][:max_batches]
        loader = make_loader(self.valid_set, batches, int(t.num_workers), self.seed, self.device.type == "cuda")
        total = torch.zeros(2, dtype=torch.float64, device=self.device)
        bar = self._bar(total=len(batches), desc="validation") if max_batches is None else None
        # Validation must not move the training's random streams, whatever a model does in eval.
        devices = [self.device] if self.device.type == "cuda" else []
        # Whole validation utterances vary in length: a compiled model would recompile for each
        # one (minutes per epoch, seen on an H200), so validation runs eagerly.
        eager = torch.compiler.set_stance("force_eager") if t.compile else contextlib.nullcontext()
        with torch.random.fork_rng(devices=devices, device_type=self.device.type if devices else "cuda"), eager:
            for batch in loader:
                batch = to_device(batch, self.device)
                with self._autocast():
                    est = validation_estimates(model, self.hooks, batch)
                improvement, _ = si_snri(est.float(), batch["sources"].float(), batch["mixture"].float())
                total[0] += improvement.double().mean(dim=-1).sum()
                total[1] += improvement.shape[0]
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()
        if self.dist.enabled:
            torch.distributed.all_reduce(total)
        model.train(was_training)
        return float(total[0] / total[1].clamp(min=1))

    # --- checkpoints --------------------------------------------------------------------

    def _save(self) -> None:
        meta, rng_tensors = capture_rng(self.device)
        if self.dist.enabled:
            gathered: list = [None] * self.dist.world
            torch.distributed.all_gather_object(gathered, (meta, {k: v.cpu() for k, v in rng_tensors.items()}))
        else:
            gathered = [(meta, rng_tensors)]
        if self.dist.main:
            tensors, optim_meta = flatten_optimizer(self.optimizer.state_dict())
            for rank, (_, rt) in enumerate(gathered):
                tensors.update({f"rng/{rank}/{k}": v for k, v in rt.items()})
            if self.trainee.objective is not None:
                tensors.update({f"objective/{k}": v for k, v in self.trainee.objective.state_dict().items()})
            state = {
                "step": self.step, "epoch": self.epoch, "batch": self.batch, "n_batches": self.n_batches,
                "finished": self.finished, "early_stopped": self.early_stopped, "sums": self.sums, "count": self.count,
                "window": self.window, "window_count": self.window_count,
                "skipped": self.skipped, "elapsed": self.elapsed,
                "optimizer": optim_meta, "recipe": self.recipe.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
                "rng": [m for m, _ in gathered], "world_size": self.dist.world,
                "written": datetime.datetime.now().isoformat(timespec="seconds"),
            }
            write_checkpoint(self.run_dir, self.step, self.model, tensors, state,
                             {"training": {"epoch": self.epoch, "batch": self.batch, "step": self.step}})
            prune_checkpoints(self.run_dir, int(self.t.keep_checkpoints))
        if self.dist.enabled:
            torch.distributed.barrier()


def uncompile(model: nn.Module) -> None:
    """Undo ``nn.Module.compile`` on ``model`` and its submodules: their calls run eagerly again."""
    for module in model.modules():
        # Where nn.Module.compile keeps the compiled call; torch has no public way to undo it.
        module._compiled_call_impl = None


# --------------------------------------------------------------------------------------
# A run from start to end
# --------------------------------------------------------------------------------------


def new_run(config: str | os.PathLike, overrides: list[str] | tuple[str, ...] = (),
            out: str | os.PathLike | None = None) -> tuple[dict, Path, str]:
    """The resolved config, run folder and config source of a new run. ``config``: a bundled
    config's name (``tdanet-lrs2``) or a YAML file; ``overrides``: ``KEY=VALUE`` entries;
    ``out``: the run folder (default ``runs/<config>-<time>``)."""
    source = str(config)
    config_path = Path(config)
    if not config_path.is_file() and not config_path.suffix:
        from ..core.config import CONFIG_DIR
        if (CONFIG_DIR / f"{config}.yaml").is_file():
            config_path = CONFIG_DIR / f"{config}.yaml"
    cfg = resolve_config(apply_overrides(load_config(config_path), list(overrides)), source)
    if out:
        run_dir = Path(out)
    else:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = Path("runs") / f"{config_path.stem}-{stamp}"
    return cfg, run_dir, source


def resumed_run(run_dir: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> tuple[dict, Path, str]:
    """The resolved config, run folder and config source of a run to continue; ``overrides``
    (``KEY=VALUE``) are applied and written into its config.yaml."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise CocktailError(f"{run_dir}: not a run folder (no config.yaml); give the folder a "
                            f"'cocktail train' run writes into")
    if not checkpoint_dirs(run_dir):
        raise no_checkpoint_error(run_dir)
    source = str(run_dir / "config.yaml")
    cfg = resolve_config(apply_overrides(load_config(run_dir / "config.yaml"), list(overrides)), source)
    if overrides and Distributed.from_env().main:
        write_config(run_dir / "config.yaml", cfg)
    return cfg, run_dir, source


def run_training(cfg: dict, run_dir: Path, source: str, resume: bool = False, device: str | None = None,
                 progress: bool = True, stop_at: float | None = None) -> int:
    """Train ``cfg`` into ``run_dir`` (from :func:`new_run` or :func:`resumed_run`) to the end,
    or until a signal or ``stop_at`` (a ``time.monotonic()``). Returns the exit status: 0 when
    done; a stopped run is resumable but not done: the shell's 128 + signal number, or
    :data:`EXIT_SLOT_ENDED`, tells scripts (benchmarks/quality.py, a scheduler) to come back
    with ``--resume``."""
    trainer = Trainer(cfg, run_dir, resume=resume, device=device, progress=progress, source=source, stop_at=stop_at)
    if trainer.dist.main and not resume:
        log.info("training %s into %s (%d batches of %d per epoch, %s)", cfg["model"]["architecture"],
                 run_dir, trainer.n_batches, trainer.t.batch_size, trainer.device)
    try:
        outcome = trainer.fit()
    finally:
        if trainer.dist.enabled and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if outcome == "stopped":
        return 128 + int(trainer.stop_signal) if trainer.stop_signal else EXIT_SLOT_ENDED
    return 0
