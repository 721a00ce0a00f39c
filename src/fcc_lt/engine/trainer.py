"""The one trainer: the epoch loop, and the bookkeeping around it.

It knows no particular method. The parts are built from the config (``engine.build``: network,
optimizer, loss, mixer, FCC, teacher), a step is ``engine.step.TrainingStep``, the run directory is
``engine.run_dir``, checkpoints ``engine.checkpoint``, an epoch's tallies and progress ``engine.meter``,
signals ``engine.signals``, epoch records ``engine.metrics_log``, the final evaluation
``evaluation.evaluate``. Every random stream derives from the run seed and the (epoch, step) it is used
in, so a stopped and resumed run ends with exactly the weights of one that ran straight through.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from fcc_lt.config.schema import Config
from fcc_lt.data.build import build_eval_loader, build_splits, build_train_loader
from fcc_lt.engine.build import build_method, build_optimizer, build_sampler, build_training_network, wrap_for_training
from fcc_lt.engine.checkpoint import LoopState, RunCheckpoints, checkpoint_bytes
from fcc_lt.engine.lr_schedule import learning_rate
from fcc_lt.engine.meter import EpochMeter, EvalProgress
from fcc_lt.engine.metrics_log import MetricsLog
from fcc_lt.engine.run_dir import check_free_space, prepare_run_dir, record_resume_changes, write_config
from fcc_lt.engine.run_log import RunLog, format_duration
from fcc_lt.engine.signals import StopSignals, TrainingInterrupted
from fcc_lt.engine.step import TrainingStep
from fcc_lt.evaluation.evaluate import evaluate_to_files
from fcc_lt.evaluation.passes import run_eval
from fcc_lt.models.tau_norm import eval_view
from fcc_lt.util.distributed import DistContext, barrier, broadcast_buffers, in_turns, setup
from fcc_lt.util.errors import ConfigError, FccError, TrainingError
from fcc_lt.util.files import read_input_text
from fcc_lt.util.precision import autocast_dtype, grad_scaler
from fcc_lt.util.run_lock import unlock_run_dir

log = logging.getLogger("fcc")

__all__ = ["Trainer", "TrainingInterrupted"]


def refuse_empty_epochs(cfg: Config, steps_per_epoch: Callable[[int], int], num_samples: Callable[[int], int],
                        world_size: int) -> None:
    """A training set smaller than one batch trains nothing (every epoch has 0 steps with train.drop_last, or
    leaves a process without samples): refused before training, naming the batch and the image count."""
    t = cfg.train
    epoch = min((1, t.epochs), key=steps_per_epoch)
    if steps_per_epoch(epoch) > 0:
        return
    n = num_samples(epoch)
    per_rank = (f"; per process of {world_size}: {n // world_size} images, batches of {t.batch_size // world_size}"
                if world_size > 1 else "")
    fix = "lower train.batch_size" + (" or set train.drop_last=false" if t.drop_last and n else "")
    raise ConfigError(f"train.batch_size={t.batch_size} is larger than the training set of {n} images{per_rank}: "
                      f"no epoch would train a single step; {fix}")


class Trainer:
    """Builds every part of a run from its config and trains it; ``fit()`` returns the final eval."""

    def __init__(self, cfg: Config, *, resume: bool = False, overwrite: bool = False,
                 ctx: DistContext | None = None, notes: Sequence[str] = (), command: Sequence[str] | None = None
                 ) -> None:
        """``notes``: messages from before the run existed (the config's warnings), and ``command`` the command
        line (this process's by default), for the run's train.log."""
        self.cfg = cfg
        self.started = time.monotonic()
        self.notes, self.command = list(notes), command
        self.ctx = ctx or setup(cfg.device)
        self.device = self.ctx.device
        t = cfg.train
        if t.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        elif self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        if self.ctx.distributed and t.sync_bn and self.device.type != "cuda":
            raise ConfigError(f"train.sync_bn: PyTorch's SyncBatchNorm runs on CUDA devices only, not on "
                              f"{self.device.type}; set train.sync_bn=false (each process then normalises "
                              "with the statistics of its own share of the batch)")
        self.run_dir = Path(cfg.out or "runs/default")
        self.resuming = resume
        created = [d for d in (self.run_dir, *self.run_dir.parents) if not d.exists()]  # what this start makes
        try:
            self._build(resume, overwrite)
        except BaseException:
            self._abandon_start(created)
            raise

    def _abandon_start(self, created: list[Path]) -> None:
        """A start that failed before training leaves nothing behind: the lock is released, and the run
        directory this start created (config, empty folders), and the parents it created, are removed."""
        if hasattr(self, "metrics"):
            self.metrics.close("failed")
        if hasattr(self, "run_log"):
            self.run_log.line(f"error: the start failed: {sys.exc_info()[1]}")
            self.run_log.close()
        unlock_run_dir(self.run_dir)
        if not (created and self.ctx.is_main):
            return
        if any((self.run_dir / "checkpoints").glob("*.pt")) or (self.run_dir / "metrics.jsonl").exists():
            return  # never happens before training; kept rather than deleting anything trained
        shutil.rmtree(self.run_dir, ignore_errors=True)
        for parent in created[1:]:  # innermost first; only folders this start made, and only when empty
            try:
                parent.rmdir()
            except OSError:
                break

    def _build(self, resume: bool, overwrite: bool) -> None:
        cfg, t = self.cfg, self.cfg.train
        if self.ctx.is_main:
            prepare_run_dir(cfg, resume=resume, overwrite=overwrite)
            if not resume:
                write_config(self.run_dir, cfg)
        barrier(self.ctx)
        self.run_log = RunLog(self.run_dir, enabled=self.ctx.is_main)
        self.run_log.open(self.device, self.command, notes=self.notes)

        # rank 0 first: a download or extraction happens once, and the other ranks find it done
        self.splits = in_turns(self.ctx, lambda: build_splits(cfg))
        self.stats = self.splits.stats
        self.eval_splits = ["test"] + (["val"] if self.splits.val is not None else [])
        self._check_eval_choice()

        self.model, self.frozen_modules = build_training_network(cfg, self.stats.num_classes, self.ctx,
                                                                 resuming=resume)
        self.forward = wrap_for_training(self.model, self.ctx)
        self.parts = build_method(cfg, self.stats, self.device)
        self.criterion, self.mixer, self.teacher = self.parts.criterion, self.parts.mixer, self.parts.teacher
        self.sampler = build_sampler(cfg, self.splits)
        self.train_loader = build_train_loader(cfg, self.splits, self.sampler, self.ctx)
        refuse_empty_epochs(cfg, self.train_loader.steps_per_epoch, self.sampler.num_samples, self.ctx.world_size)
        self.mixer.bind(model=self.model, loader=self.train_loader, teacher=self.teacher)
        self.eval_loaders = {name: build_eval_loader(cfg, self.splits, self.splits.split(name), self.ctx)
                             for name in self.eval_splits}

        self.amp_dtype = autocast_dtype(t.amp, self.device)
        self.scaler = grad_scaler(self.device, self.amp_dtype)
        self.optimizer = build_optimizer(cfg, self.model, loss_scaling=self.scaler is not None)
        self.step = TrainingStep(cfg, self.ctx, self.forward, self.model, self.parts, self.optimizer, self.scaler,
                                 self.amp_dtype)
        if self.ctx.is_main:
            kept = t.keep_best + (t.epochs // t.keep_every if t.keep_every else 0)
            check_free_space(self.run_dir, checkpoint_bytes(cfg, self.model), kept=kept)

        self.loop = LoopState()
        self.checkpoints = RunCheckpoints(self.run_dir, self.ctx, fp16=self.amp_dtype is torch.float16)
        self.signals = StopSignals(self.ctx)
        self.step_callback: Callable[[Trainer, int, int], None] | None = None
        self.metrics = MetricsLog(self.run_dir, cfg, is_main=self.ctx.is_main, resuming=resume, echo=self.run_log.line)
        if resume:
            if self.checkpoints.last.exists():
                self.loop = self.checkpoints.restore(cfg=cfg, stats=self.stats, steps_per_epoch=self.steps_per_epoch,
                                                     model=self.model, optimizer=self.optimizer, scaler=self.scaler)
                self.checkpoints.repair_kept(self.loop, self._kept_every)
                self.metrics.truncate(self.loop.next_epoch)
            else:  # stopped before its first checkpoint: nothing was finished yet
                if self.ctx.is_main:
                    log.info("%s has no checkpoint yet (stopped during its first epoch); starting at epoch 1",
                             self.run_dir)
                self.metrics.truncate(1)
            if self.ctx.is_main and not self._done():  # a finished run changes nothing (see fit)
                at = f"epoch {self.loop.next_epoch}" + (f", step {self.loop.next_step}" if self.loop.next_step else "")
                changes = record_resume_changes(self.run_dir, cfg, at)
                if changes:
                    shown = ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changes.items())
                    log.info("resuming %s at %s with changes (config.yaml updated, config_history.yaml): %s",
                             self.run_dir, at, shown)

    # ------------------------------------------------------------------------------------- checks

    def _check_eval_choice(self) -> None:
        """eval.checkpoint: best and eval.split: val need a validation split: found now, not after training."""
        e = self.cfg.eval
        if self.splits.val is None and (e.checkpoint == "best" or e.split == "val"):
            key = "eval.checkpoint: best" if e.checkpoint == "best" else "eval.split: val"
            raise ConfigError(f"{key} needs a validation split, and {self.splits.name} has none: set "
                              "data.val_per_class > 0 (CIFAR) or data.val_json (image datasets), or use "
                              "eval.checkpoint=last / eval.split=test")
        if self.splits.val is None and self.cfg.train.keep_best:
            raise ConfigError(f"train.keep_best: {self.cfg.train.keep_best} keeps the best epochs by validation "
                              f"top-1, and {self.splits.name} has no validation split: set data.val_per_class > 0 "
                              "(CIFAR) or data.val_json (image datasets), or use train.keep_every")

    # ------------------------------------------------------------------------------ checkpointing

    def _state(self) -> dict[str, Any]:
        return self.checkpoints.state(cfg=self.cfg, model=self.model, optimizer=self.optimizer, scaler=self.scaler,
                                      loop=self.loop, stats=self.stats, class_names=list(self.splits.class_names),
                                      world_size=self.ctx.world_size)

    def save(self, name: str = "last") -> Path:
        """Write ``checkpoints/<name>.pt`` (rank 0), never replacing a good checkpoint by a diverged one."""
        return self.checkpoints.save(self._state(), name)

    # --------------------------------------------------------------------------------------- loop

    @property
    def _show(self) -> bool:
        """Whether this process shows progress (rank 0, train.progress)."""
        return self.cfg.train.progress and self.ctx.is_main

    def steps_per_epoch(self, epoch: int) -> int:
        """The loader's steps, capped by ``train.max_steps_per_epoch`` (smoke runs)."""
        steps = self.train_loader.steps_per_epoch(epoch)
        cap = self.cfg.train.max_steps_per_epoch
        return steps if cap is None else min(steps, cap)

    def request_stop(self, signum: int | None = None) -> None:
        """Stop after the current step as SIGTERM would (used by tests and embedding code)."""
        self.signals.request(*(() if signum is None else (signum,)))

    def fit(self) -> dict[str, Any]:
        """Train the epochs left, evaluate, write eval.json; returns its content. A run already finished (its
        last epoch trained and eval.json written) is said to be so, and its eval.json returned."""
        status = "failed"
        try:
            finished = self._finished_result()
            if finished is not None:
                status = "finished"
                return finished
            with self.signals.installed():
                for epoch in range(self.loop.next_epoch, self.cfg.train.epochs + 1):
                    self._run_epoch(epoch)
            result = self.final_eval()
            self.metrics.final(result)
            status = "finished"
            self._say_where_results_are(result)
            return result
        except TrainingInterrupted:
            status = "interrupted"
            raise
        except FccError as err:
            self.run_log.line(f"error: {err}")
            raise
        finally:
            self.metrics.close(status)
            self.run_log.close()
            unlock_run_dir(self.run_dir)

    def _done(self) -> bool:
        """Whether this resumed run has trained every epoch and written its eval.json."""
        return (self.resuming and self.loop.next_epoch > self.cfg.train.epochs
                and (self.run_dir / "eval.json").is_file())

    def _finished_result(self) -> dict[str, Any] | None:
        """eval.json of a resumed run that has nothing left to do, after saying so; None otherwise."""
        eval_json = self.run_dir / "eval.json"
        if not self._done():
            return None
        try:
            result = json.loads(read_input_text(eval_json, "evaluation result (eval.json)"))
        except (FccError, json.JSONDecodeError):
            return None  # unreadable: the final evaluation is done again
        if not isinstance(result, dict):
            return None
        if self.ctx.is_main:
            log.info("%s is finished: %d epochs trained, evaluated in %s; nothing to do. `fcc eval %s` evaluates it "
                     "again, `fcc train --resume %s train.epochs=N` trains it on to epoch N", self.run_dir,
                     self.cfg.train.epochs, eval_json, self.run_dir, self.run_dir)
        return result

    def _say_where_results_are(self, result: dict[str, Any]) -> None:
        if not self.ctx.is_main:
            return
        top1 = result.get("top1")
        shown = f"top-1 {top1:.2f}% on {result.get('split', 'test')}, " if isinstance(top1, (int, float)) else ""
        log.info("finished %s in %s: %s%s (metrics.jsonl, checkpoints/, train.log beside it)", self.run_dir,
                 format_duration(time.monotonic() - self.started), shown, self.run_dir / "eval.json")

    def _set_lr(self, epoch: int) -> float:
        lr = learning_rate(epoch, self.cfg.train)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def _train_mode(self) -> None:
        self.model.train()
        if self.cfg.train.freeze_bn is not False:  # BN of frozen modules keeps its statistics (cRT, LWS)
            for module in self.frozen_modules:
                module.eval()

    def _run_epoch(self, epoch: int) -> None:
        t, loop = self.cfg.train, self.loop
        lr = self._set_lr(epoch)
        self.criterion.set_epoch(epoch)
        self._train_mode()
        start = loop.next_step if epoch == loop.next_epoch else 0
        steps = self.steps_per_epoch(epoch)
        meter = EpochMeter(self.ctx, epoch, t.epochs, steps, start, loop.partial, show=t.progress, lr=lr)
        batches = self.train_loader.epoch(epoch, start)
        try:
            for step in range(start, steps):
                images, labels = next(batches)
                out = self.step(images, labels, epoch, step, self._global_batch(epoch, step, labels))
                if self.step.skipped:
                    loop.nonfinite_skipped += 1
                    if loop.nonfinite_skipped > t.max_nonfinite_steps:
                        raise TrainingError(self.checkpoints.nonfinite_message(epoch, step, steps,
                                                                               skipped=t.max_nonfinite_steps))
                meter.add(step, out.loss, out.correct, 0 if self.step.skipped else labels.numel())  # a skipped
                # step's samples count nowhere
                if (step + 1) % t.log_every == 0:
                    self._stop_if_nonfinite(meter.look(), epoch, steps)
                if self.step_callback is not None:
                    self.step_callback(self, epoch, step)
                if step + 1 < steps and self.signals.requested(at_log=(step + 1) % t.log_every == 0):
                    self._stop_if_nonfinite(meter.earliest_bad(), epoch, steps)
                    self._interrupt(epoch, step, meter)
            if steps == self.train_loader.steps_per_epoch(epoch):
                next(batches, None)  # let the loader finish its epoch (it reports skipped images there)
        finally:
            batches.close()  # a capped epoch (train.max_steps_per_epoch) stops the loader early
            meter.close()
        self._stop_if_nonfinite(meter.earliest_bad(), epoch, steps)
        record = self._epoch_record(epoch, lr, meter)
        loop.next_epoch, loop.next_step, loop.partial = epoch + 1, 0, None
        self._end_epoch(record, epoch)
        if epoch < t.epochs and self.signals.requested(at_log=True):
            raise self.signals.interrupted(self.run_dir, epoch + 1, 0)

    def _global_batch(self, epoch: int, step: int, labels: Tensor) -> int:
        """The samples of this step's global batch: train.batch_size, or what is left for a last partial one."""
        b = self.cfg.train.batch_size
        if labels.numel() * self.ctx.world_size == b:
            return b
        return min(b, self.sampler.num_samples(epoch) - step * b)

    def _stop_if_nonfinite(self, bad_step: int | None, epoch: int, steps: int) -> None:
        if bad_step is not None:
            self.metrics.flush()
            raise TrainingError(self.checkpoints.nonfinite_message(epoch, bad_step, steps))

    def _epoch_record(self, epoch: int, lr: float, meter: EpochMeter) -> dict[str, Any]:
        """The epoch's metrics (summed over ranks) and, on evaluated epochs, each split's top-1."""
        t = self.cfg.train
        loss_sum, correct, total = meter.totals()
        epoch_time = meter.elapsed()
        record: dict[str, Any] = {"epoch": epoch, "lr": lr,
                                  "train_loss": loss_sum / total if total else None,
                                  "train_acc": 100.0 * correct / total if total else None}
        broadcast_buffers(self.model, self.ctx)  # evaluate and save the one model rank 0 holds
        if epoch % t.eval_every == 0 or epoch == t.epochs:
            # what eval.json will report (tau-normalised with eval.tau_norm), so that best.pt is chosen on it
            model = eval_view(self.model, self.cfg.eval.tau_norm)
            for split, loader in self.eval_loaders.items():
                shown = EvalProgress(loader, f"epoch {epoch}: evaluating {split}", show=self._show)
                tally = run_eval(model, shown, self.stats.num_classes, self.ctx, self.amp_dtype,
                                 max_batches=self.cfg.eval.max_batches)
                seen = int(tally.total.sum())
                record[f"{split}_top1"] = 100.0 * int(tally.top1.sum()) / seen if seen else None
        record["epoch_time"] = epoch_time
        record["images_per_s"] = total / epoch_time if epoch_time > 0 else None
        if self.loop.nonfinite_skipped:
            record["nonfinite_skipped"] = self.loop.nonfinite_skipped
        if getattr(self.train_loader, "skipped_images", 0):  # undecodable images left out (data.skip_bad_images)
            record["skipped_images"] = self.train_loader.skipped_images
        return record

    def _end_epoch(self, record: dict[str, Any], epoch: int) -> None:
        """Log the epoch and checkpoint it: metrics line, last.pt, then (on improvement) its copy as best.pt.

        A kill between any two writes is harmless: a metrics line without its checkpoint is dropped and
        the epoch redone on resume; a last.pt claiming a best that best.pt does not hold yet is repaired
        (fcc_lt.engine.checkpoint.repair_best). Weights or statistics that are no longer finite stop the run
        here, before anything claims the epoch, so the checkpoint kept is the last good one.
        """
        t, loop = self.cfg.train, self.loop
        val = record.get("val_top1")
        improved = val is not None and (loop.best["val_top1"] is None or val > loop.best["val_top1"])
        if improved:
            loop.best = {"val_top1": val, "epoch": epoch}
        loop.prune = []
        if t.keep_best and val is not None:
            loop.keep_best(epoch, val, t.keep_best, self._kept_every)
        if self.ctx.is_main:
            state = self.checkpoints.checked(self._state())
            self.metrics.log(record)
            self.checkpoints.save_epoch(state, improved=improved, keep=loop.keeps(epoch, self._kept_every))
        barrier(self.ctx)

    def _kept_every(self, epoch: int) -> bool:
        """Whether train.keep_every keeps this epoch's checkpoint."""
        every = self.cfg.train.keep_every
        return every is not None and epoch % every == 0

    def _interrupt(self, epoch: int, step: int, meter: EpochMeter) -> None:
        # totals over all ranks, so that the checkpoint resumes on any number of processes
        self.loop.next_epoch, self.loop.next_step = epoch, step + 1
        self.loop.partial = {"sums": meter.totals(), "elapsed": meter.elapsed()}
        self.save("last")
        barrier(self.ctx)
        raise self.signals.interrupted(self.run_dir, epoch, step + 1)

    # ---------------------------------------------------------------------------------- final eval

    def final_eval(self, split: str | None = None, which: str | None = None) -> dict[str, Any]:
        """Evaluate the final (or best) weights and write eval.json; returns its content."""
        split = split or self.cfg.eval.split
        which = which or self.cfg.eval.checkpoint
        path = self.run_dir / "checkpoints" / f"{which}.pt"
        epoch = self.loop.next_epoch - 1
        if which == "best":
            epoch = self.checkpoints.load_best(self.model)
        info = {"checkpoint": str(path.relative_to(self.run_dir)), "epoch": epoch}
        loader = self.eval_loaders.get(split) or build_eval_loader(self.cfg, self.splits, self.splits.split(split),
                                                                  self.ctx)
        loader = EvalProgress(loader, f"final evaluation: {split}", show=self._show)
        return evaluate_to_files(self.run_dir, self.cfg, self.model, self.stats, self.splits.class_names, loader,
                                 self.ctx, split=split, info=info, amp_dtype=self.amp_dtype)
