"""The one trainer: epochs, optimisation and LR schedule, AMP, DDP, checkpoints and resume, logging.

It knows no particular method: the loss, sampler, mixer and FCC are parts built from the config, and
``fcc.objective`` turns a batch into a loss. Every random stream derives from the run seed and the
(epoch, step) it is used in, so a stopped and resumed run ends with exactly the weights of one that
ran straight through.

Run directory: ``config.yaml`` (resolved), ``metrics.jsonl`` (one line per epoch),
``checkpoints/last.pt`` (every epoch, and when stopped by a signal), ``checkpoints/best.pt`` (best
validation top-1, only when a validation split exists), ``eval.json`` and confusion files at the end.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from fcc import __version__
from fcc.checkpoint import (
    atomic_write_bytes,
    atomic_write_text,
    load_checkpoint,
    load_model_state,
    lock_run_dir,
    read_checkpoint,
    remove_stale_temps,
    save_checkpoint,
    unlock_run_dir,
)
from fcc.config import Config, from_dict, validate
from fcc.data.build import build_eval_loader, build_sampler, build_splits, build_train_loader
from fcc.distributed import DistContext, all_reduce_sum, barrier, broadcast_buffers, in_turns, setup
from fcc.errors import CheckpointError, ConfigError, FccError, OutputError, TrainingError
from fcc.evaluate import evaluate_to_files, run_eval
from fcc.metrics import summarize
from fcc.models import build_network
from fcc.objective import Objective, StepOutput
from fcc.precision import autocast, autocast_dtype, grad_scaler
from fcc.registry import LOSSES, MIXERS
from fcc.rng import StreamGenerators, derive_seed
from fcc.schedule import learning_rate

log = logging.getLogger("fcc")


class TrainingInterrupted(FccError):
    """A signal stopped the run after a step; its checkpoint was saved and it can be resumed."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def prepare_run_dir(cfg: Config, *, resume: bool, overwrite: bool) -> Path:
    """Create (or check) the run directory and make sure it is writable before any work starts."""
    run_dir = Path(cfg.out or "runs/default")
    last = run_dir / "checkpoints" / "last.pt"
    if not resume and last.exists() and not overwrite:
        raise OutputError(f"{run_dir} already holds a run ({last}); continue it with "
                          f"`fcc train --resume {run_dir}`, choose another out=..., or pass --overwrite")
    try:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        lock_run_dir(run_dir)  # before anything in the folder is touched; released when fit() ends
        probe = run_dir / ".write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
        # temporary files of a write that a kill interrupted (the finished files are intact)
        remove_stale_temps(run_dir)
        remove_stale_temps(run_dir / "checkpoints")
        if overwrite and not resume:
            for name in ("metrics.jsonl", "eval.json", "confusion.csv", "confusion.png"):
                (run_dir / name).unlink(missing_ok=True)
            for ckpt in (run_dir / "checkpoints").glob("*.pt"):
                ckpt.unlink()
    except OSError as err:
        raise OutputError(f"cannot write to the run directory {run_dir}: {err.strerror or err}") from None
    return run_dir


def load_run_config(run_dir: Path, overrides: list[str] | None = None) -> Config:
    """The resolved config a run directory was started with, optionally overridden."""
    from fcc.config import apply_overrides, read_yaml

    path = run_dir / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a run directory: {path} is missing (a run stopped before it "
                          "wrote its config has nothing to resume: start it again from its config file)")
    raw = apply_overrides(read_yaml(path), overrides or [])
    cfg = from_dict(raw, str(path))
    cfg.out = str(run_dir)
    validate(cfg)
    return cfg


class Trainer:
    """Builds every part of a run from its config and trains it; ``fit()`` returns the final eval."""

    def __init__(self, cfg: Config, *, resume: bool = False, overwrite: bool = False,
                 ctx: DistContext | None = None) -> None:
        self.cfg = cfg
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
        if self.ctx.is_main:
            prepare_run_dir(cfg, resume=resume, overwrite=overwrite)
            if not resume:
                text = cfg.dump()
                atomic_write_text(self.run_dir / "config.yaml", text)
        barrier(self.ctx)

        # rank 0 first: a download or extraction happens once, and the other ranks find it done
        self.splits = in_turns(self.ctx, lambda: build_splits(cfg))
        self.class_counts = self.splits.class_counts
        self.num_classes = self.splits.num_classes

        self.model = self._build_model()
        self._build_method_parts()
        self.sampler = build_sampler(cfg, self.splits, self.ctx)
        self.train_loader = build_train_loader(cfg, self.splits, self.sampler, self.ctx)
        self.mixer.bind(model=unwrap(self.model), loader=self.train_loader)
        self.eval_splits = ["test"] + (["val"] if self.splits.val is not None else [])
        self.eval_loaders = {name: build_eval_loader(cfg, self.splits, self.splits.split(name), self.ctx)
                             for name in self.eval_splits}

        self.optimizer = self._build_optimizer()
        self.amp_dtype = autocast_dtype(t.amp, self.device)
        self.scaler = grad_scaler(self.device, self.amp_dtype)
        self.generators = StreamGenerators(cfg.seed)
        if self.ctx.is_main:
            self._check_free_space()

        self.next_epoch, self.next_step = 1, 0
        self.partial: dict[str, Any] | None = None
        self.best: dict[str, Any] = {"val_top1": None, "epoch": None}
        self.nonfinite_skipped = 0
        self.step_skipped = False
        self._stop_signal: int | None = None
        self.step_callback: Callable[[Trainer, int, int], None] | None = None
        if resume:
            last = self.run_dir / "checkpoints" / "last.pt"
            if last.exists():
                self._restore(last)
            elif self.ctx.is_main:  # stopped before its first checkpoint: nothing was finished yet
                log.info("%s has no checkpoint yet (stopped during its first epoch); starting at epoch 1",
                         self.run_dir)
                self._truncate_metrics(1)
        self.tb = self._tensorboard() if self.ctx.is_main and t.tensorboard else None

    # ------------------------------------------------------------------------------------ building

    def _build_model(self) -> nn.Module:
        """The network, initialised (seeded, or from ``model.init_from``), frozen where asked, on the
        device, and wrapped in DDP when there are several processes."""
        cfg, t = self.cfg, self.cfg.train
        torch.manual_seed(derive_seed(cfg.seed, "init"))
        model = build_network(cfg, self.class_counts)
        if cfg.model.init_from and not self.resuming:
            # A resumed run restores every weight from its own checkpoint; re-applying init_from would be
            # wasted at best (and would fail if the stage-1 run has been moved since).
            self._init_from(model, cfg.model.init_from)
        if self.ctx.distributed and t.sync_bn:
            # before freezing: the conversion replaces BN modules, which train.freeze may name
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.frozen_modules = self._freeze(model)
        model.to(self.device)
        if t.channels_last:
            model.to(memory_format=torch.channels_last)
        if self.ctx.distributed:
            return nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device] if self.device.type == "cuda" else None)
        return model

    def _build_method_parts(self) -> None:
        """The loss, the mixer, the optional teacher, and the objective that combines them with the model."""
        cfg = self.cfg
        self.criterion = LOSSES.build(cfg.loss.name, cfg.loss.params, "loss.params", self.class_counts)
        self.criterion.to(self.device)
        self.mixer = MIXERS.build(cfg.mix.name, cfg.mix.params, "mix.params", self.class_counts)
        self.teacher = None
        if cfg.distill.teacher:
            from fcc.distill import load_teacher

            self.teacher = load_teacher(cfg.distill.teacher, self.splits, self.device)
        if getattr(self.criterion, "needs_teacher", False) and self.teacher is None:
            raise ConfigError(f"loss.name: {cfg.loss.name!r} distils from a teacher; set distill.teacher "
                              "to a finished run directory or checkpoint")
        self.objective = Objective(self.model, self.criterion, self.mixer, teacher=self.teacher)

    def _init_from(self, model: nn.Module, source: str) -> None:
        path, state = read_checkpoint(source, "model.init_from",
                                      "train the first stage first, or point model.init_from at its checkpoint")
        own = model.state_dict()
        for prefix in self.cfg.model.init_exclude:
            if not any(k == prefix or k.startswith(prefix + ".") for k in own):
                from fcc.typecheck import suggest

                names = {k.rsplit(".", 1)[0] for k in own}
                raise ConfigError(f"model.init_exclude: {prefix!r} names no weights of the model"
                                  f"{suggest(prefix, names)}")
        load_model_state(model, state["model"], f"model.init_from {path}", exclude=self.cfg.model.init_exclude)

    def _freeze(self, model: nn.Module) -> list[nn.Module]:
        """Stop gradients under each ``train.freeze`` prefix; returns the frozen modules."""
        frozen = []
        names = dict(model.named_modules())
        for prefix in self.cfg.train.freeze:
            if prefix not in names:
                from fcc.typecheck import suggest

                raise ConfigError(f"train.freeze: the model has no module {prefix!r}"
                                  f"{suggest(prefix, [n for n in names if n])}")
            module = names[prefix]
            for p in module.parameters():
                p.requires_grad_(False)
            frozen.append(module)
        return frozen

    def _build_optimizer(self) -> torch.optim.Optimizer:
        t = self.cfg.train
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise ConfigError("train.freeze: every parameter is frozen; nothing would be trained")
        if t.optimizer == "sgd":
            return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay,
                                   nesterov=t.nesterov and t.momentum > 0)
        opt_cls = torch.optim.Adam if t.optimizer == "adam" else torch.optim.AdamW
        return opt_cls(params, lr=t.lr, weight_decay=t.weight_decay)

    def _tensorboard(self) -> Any:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("train.tensorboard: true needs the tensorboard package; "
                              "pip install 'fcc[tensorboard]' or set train.tensorboard=false") from None
        return SummaryWriter(str(self.run_dir / "tensorboard"))

    # ----------------------------------------------------------------------------- checkpointing

    def _state(self) -> dict[str, Any]:
        return {
            "model": unwrap(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "next_epoch": self.next_epoch,
            "next_step": self.next_step,
            "partial": self.partial,
            "best": dict(self.best),
            "nonfinite_skipped": self.nonfinite_skipped,
            "config": self.cfg.to_dict(),
            "class_counts": list(self.class_counts),
            "class_names": list(self.splits.class_names),
            "world_size": self.ctx.world_size,
            "fcc_version": __version__,
        }

    def _check_free_space(self) -> None:
        """Refuse to start when the run directory's filesystem cannot hold a checkpoint next to the previous
        one: found now, a full disk costs nothing; found at the end of epoch 1, it costs an epoch."""
        t = self.cfg.train
        slots = 2 if t.optimizer in ("adam", "adamw") else int(t.momentum > 0)  # optimizer state per parameter
        weights = sum(v.numel() * v.element_size() for v in unwrap(self.model).state_dict().values())
        trained = sum(p.numel() * p.element_size() for p in self.model.parameters() if p.requires_grad)
        size = weights + slots * trained
        try:
            free = shutil.disk_usage(self.run_dir).free
        except OSError:  # no usage figures (some network filesystems): the writes still report a full disk
            return
        if free < 2 * size:
            raise OutputError(f"{self.run_dir}: only {free / 2**20:.1f} MiB free, but a checkpoint takes about "
                              f"{size / 2**20:.1f} MiB and is written next to the previous one; free some space "
                              "or choose another out=...")

    def save(self, name: str = "last") -> Path:
        path = self.run_dir / "checkpoints" / f"{name}.pt"
        if self.ctx.is_main:
            save_checkpoint(self._state(), path)
        return path

    def _restore(self, path: Path) -> None:
        state = load_checkpoint(path, map_location=self.device)
        for key in ("model", "optimizer", "next_epoch", "next_step"):
            if key not in state:
                raise CheckpointError(f"{path}: not a resumable training checkpoint (no {key!r})")
        if state.get("class_counts") not in (None, list(self.class_counts)):
            raise CheckpointError(f"{path}: saved for a training set with other class counts; "
                                  "data.* settings differ from the run being resumed")
        load_model_state(unwrap(self.model), state["model"], str(path))
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError) as err:
            raise CheckpointError(f"{path}: optimizer state does not fit ({err})") from None
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        try:
            self.next_epoch = int(state["next_epoch"])
            self.next_step = int(state["next_step"])
        except (TypeError, ValueError):
            raise CheckpointError(f"{path}: next_epoch/next_step are not integers") from None
        self.partial = state.get("partial")
        self.best = state.get("best") or self.best
        self.nonfinite_skipped = int(state.get("nonfinite_skipped", 0))
        if self.ctx.is_main:
            self._truncate_metrics(self.next_epoch)

    def _truncate_metrics(self, next_epoch: int) -> None:
        """Drop metric lines of epochs that will be trained again after a resume."""
        path = self.run_dir / "metrics.jsonl"
        if not path.exists():
            return
        kept = []
        for line in path.read_text().splitlines():
            try:
                if json.loads(line).get("epoch", 0) < next_epoch:
                    kept.append(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
        text = "".join(line + "\n" for line in kept)
        atomic_write_text(path, text)

    # ----------------------------------------------------------------------------------- signals

    @contextmanager
    def _signals(self) -> Iterator[None]:
        """SIGTERM and Ctrl-C ask the loop to stop after the current step (main thread only)."""

        def request(signum: int, _frame: Any) -> None:
            self._stop_signal = signum

        previous = {}
        try:
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, request)
        except ValueError:  # not the main thread: leave signal handling to the caller
            previous = {}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _stop_requested(self, at_log: bool) -> bool:
        """Whether to stop after this step. Under DDP the ranks agree at log steps (one all-reduce), so a
        signal takes effect within ``train.log_every`` steps rather than after the current one."""
        if not self.ctx.distributed:
            return self._stop_signal is not None
        if not at_log:
            return False
        flag = torch.tensor([0 if self._stop_signal is None else self._stop_signal], device=self.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        if int(flag) and self._stop_signal is None:
            self._stop_signal = int(flag)
        return bool(int(flag))

    def request_stop(self, signum: int = signal.SIGTERM) -> None:
        """Stop after the current step as a signal would (used by tests and embedding code)."""
        self._stop_signal = signum

    # -------------------------------------------------------------------------------------- loop

    def fit(self) -> dict[str, Any]:
        t = self.cfg.train
        try:
            with self._signals():
                for epoch in range(self.next_epoch, t.epochs + 1):
                    self._run_epoch(epoch)
            return self.final_eval()
        finally:
            if self.tb is not None:
                self.tb.flush()
            unlock_run_dir(self.run_dir)

    def _set_lr(self, epoch: int) -> float:
        lr = learning_rate(epoch, self.cfg.train)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        return lr

    def _train_mode(self) -> None:
        self.model.train()
        if self.cfg.train.freeze_bn:
            for module in self.frozen_modules:
                module.eval()

    def _run_epoch(self, epoch: int) -> None:
        t = self.cfg.train
        lr = self._set_lr(epoch)
        self.criterion.set_epoch(epoch)
        self._train_mode()
        start_step = self.next_step if epoch == self.next_epoch else 0
        steps = self.train_loader.steps_per_epoch(epoch)
        # [loss sum, correct, samples] for this rank; first non-finite step (or -1)
        sums = torch.zeros(3, dtype=torch.float64, device=self.device)
        first_bad = torch.full((), -1, dtype=torch.long, device=self.device)
        elapsed = 0.0
        if start_step and self.partial:
            if self.ctx.is_main:  # the saved sums are totals over all ranks: count them once
                sums += torch.tensor(self.partial["sums"], dtype=torch.float64, device=self.device)
            elapsed = float(self.partial.get("elapsed", 0.0))
        bar = tqdm(total=steps, initial=start_step, desc=f"epoch {epoch}/{t.epochs}", unit="step",
                   disable=not (t.progress and self.ctx.is_main), leave=False, dynamic_ncols=True)
        t0 = time.perf_counter()
        seen = 0
        step = start_step - 1
        for step, (images, labels) in enumerate(self.train_loader.epoch(epoch, start_step), start=start_step):
            out = self._step(images, labels, epoch, step)
            finite = torch.isfinite(out.loss)
            first_bad = torch.where((first_bad < 0) & ~finite, step, first_bad)
            n = 0 if self.step_skipped else labels.numel()  # a skipped step's samples count nowhere
            sums += torch.stack([out.loss.detach().double() * n, out.correct.double(),
                                 torch.tensor(float(n), dtype=torch.float64, device=self.device)])
            seen += n
            bar.update(1)
            last_step = step + 1 == steps
            if (step + 1) % t.log_every == 0 or last_step:
                self._check_finite(first_bad, epoch, steps)
                if not bar.disable:
                    s = sums.tolist()
                    rate = seen * self.ctx.world_size / max(time.perf_counter() - t0, 1e-9)
                    bar.set_postfix(loss=f"{s[0] / max(s[2], 1):.4f}", acc=f"{100 * s[1] / max(s[2], 1):.2f}",
                                    lr=f"{lr:.4g}", img_s=f"{rate:.0f}")
            if self.step_callback is not None:
                self.step_callback(self, epoch, step)
            if not last_step and self._stop_requested(at_log=(step + 1) % t.log_every == 0):
                self._check_finite(first_bad, epoch, steps)
                self._interrupt(epoch, step, sums, elapsed + time.perf_counter() - t0)
        bar.close()
        self._check_finite(first_bad, epoch, steps)
        epoch_time = elapsed + time.perf_counter() - t0
        all_reduce_sum(sums, self.ctx)
        loss_sum, correct, count = sums.tolist()
        record: dict[str, Any] = {
            "epoch": epoch,
            "lr": lr,
            "train_loss": loss_sum / count if count else None,
            "train_acc": 100.0 * correct / count if count else None,
        }
        broadcast_buffers(unwrap(self.model), self.ctx)  # evaluate and save the one model rank 0 holds
        if epoch % t.eval_every == 0 or epoch == t.epochs:
            for split, loader in self.eval_loaders.items():
                # the bare module: DDP's forward may broadcast buffers, a collective that ranks with
                # different numbers of eval batches would not all reach
                tally = run_eval(unwrap(self.model), loader, self.num_classes, self.ctx, self.amp_dtype)
                record[f"{split}_top1"] = summarize(tally, self.class_counts)["top1"]
        record["epoch_time"] = epoch_time
        record["images_per_s"] = count / epoch_time if epoch_time > 0 else None
        if self.nonfinite_skipped:
            record["nonfinite_skipped"] = self.nonfinite_skipped
        if getattr(self.train_loader, "skipped_images", 0):  # undecodable images left out (data.skip_bad_images)
            record["skipped_images"] = self.train_loader.skipped_images
        self.next_epoch, self.next_step, self.partial = epoch + 1, 0, None
        improved = self._update_best(record, epoch)
        if self.ctx.is_main:
            self._log(record)
            self.save("last")
            if improved:
                with open(self.run_dir / "checkpoints" / "last.pt", "rb") as src:
                    atomic_write_bytes(self.run_dir / "checkpoints" / "best.pt",
                                       lambda f: shutil.copyfileobj(src, f))
        barrier(self.ctx)
        if epoch < t.epochs and self._stop_requested(at_log=True):
            self._raise_interrupted(epoch + 1, 0)

    def _step(self, images: Tensor, labels: Tensor, epoch: int, step: int) -> StepOutput:
        """One optimiser step over ``grad_accum_steps`` micro-batches of this rank's batch.

        This rank holds positions rank::world of the global batch and micro-batch i takes positions
        i::k of those, i.e. global positions rank + world*i :: world*k; its random streams are keyed by
        that global micro-batch index. How a global batch is cut into groups (each normalised with its
        own BatchNorm statistics, each mixed on its own) thus depends only on world*k: one process with
        k = 2 computes the same step as two processes with k = 1.
        """
        t = self.cfg.train
        world, rank = self.ctx.world_size, self.ctx.rank
        chunks = max(1, min(t.grad_accum_steps, labels.numel()))
        micro_images = [images[i::chunks] for i in range(chunks)]
        micro_labels = [labels[i::chunks] for i in range(chunks)]
        # Each micro-batch's mean loss is weighted by its share of the global batch, times world because
        # DDP averages gradients over ranks: the result is the gradient of the global batch mean, also for
        # a last partial batch (train.drop_last: false) that leaves ranks with unequal shares.
        global_n = t.batch_size
        if labels.numel() * world != t.batch_size:
            global_n = min(t.batch_size, self.sampler.num_samples(epoch) - step * t.batch_size)
        total_loss = torch.zeros((), device=self.device)
        total_correct = torch.zeros((), device=self.device)
        self.step_skipped = False
        # Opt-in skipping keeps the buffers (BN statistics) so that a skipped step leaves no trace.
        saved = [b.detach().clone() for b in unwrap(self.model).buffers()] if t.max_nonfinite_steps > 0 else None
        for i, (x, y) in enumerate(zip(micro_images, micro_labels)):
            sync = nullcontext()
            if self.ctx.distributed and i < len(micro_labels) - 1:
                sync = self.model.no_sync()  # type: ignore[operator]
            micro = rank + world * i
            torch.manual_seed(derive_seed(self.cfg.seed, "step", epoch, step, micro))
            gen = self.generators.get("mix", self.device, epoch, step, micro)
            with sync:
                with autocast(self.device, self.amp_dtype):
                    out = self.objective(x, y, epoch, gen)
                weight = y.numel() * world / global_n
                loss = out.loss.float() * weight
                if self.scaler is not None:
                    self.scaler.scale(loss).backward()
                else:
                    loss.backward()
            # this rank's mean loss, for the logged train loss (the weight above is for the gradient)
            total_loss = total_loss + out.loss.detach().float() * (y.numel() / labels.numel())
            total_correct = total_correct + out.correct.detach().float()
        if saved is not None and self._any_rank_nonfinite(total_loss):
            # Opt-in skipping costs one host sync per step; the default path never syncs here.
            self.nonfinite_skipped += 1
            self.step_skipped = True
            self.optimizer.zero_grad(set_to_none=True)
            with torch.no_grad():
                for buffer, value in zip(unwrap(self.model).buffers(), saved):
                    buffer.copy_(value)
            if self.nonfinite_skipped > t.max_nonfinite_steps:
                raise TrainingError(self._nonfinite_message(epoch, step, self.train_loader.steps_per_epoch(epoch),
                                                            skipped=True))
            zero = torch.zeros((), device=self.device)
            return StepOutput(zero, zero)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return StepOutput(total_loss, total_correct)

    # ---------------------------------------------------------------------------------- failures

    def _nonfinite_message(self, epoch: int, step: int, steps: int, skipped: bool = False) -> str:
        last = self.run_dir / "checkpoints" / "last.pt"
        kept = (f"the last good checkpoint {last} (resumes at epoch {self.next_epoch}) is kept"
                if last.exists() else "no checkpoint had been written yet")
        extra = (f" after skipping {self.cfg.train.max_nonfinite_steps} such steps "
                 "(train.max_nonfinite_steps)" if skipped else "")
        return (f"non-finite loss at epoch {epoch}, step {step + 1} of {steps}{extra}; training stopped and "
                f"{kept}. Lower train.lr, check the data, or allow skipping with train.max_nonfinite_steps.")

    def _any_rank_nonfinite(self, loss: Tensor) -> bool:
        """Whether the loss is non-finite on any rank (all ranks must skip a step together)."""
        bad = (~torch.isfinite(loss)).float().reshape(1)
        all_reduce_sum(bad, self.ctx)
        return bool(bad)

    def _check_finite(self, first_bad: Tensor, epoch: int, steps: int) -> None:
        if self.ctx.distributed:  # every rank stops together, at the earliest bad step of any rank
            never = torch.iinfo(torch.long).max
            earliest = torch.where(first_bad >= 0, first_bad, never).reshape(1)
            torch.distributed.all_reduce(earliest, op=torch.distributed.ReduceOp.MIN)
            first_bad = torch.where(earliest == never, -1, earliest)
        bad = int(first_bad)
        if bad >= 0:
            if self.tb is not None:
                self.tb.flush()
            raise TrainingError(self._nonfinite_message(epoch, bad, steps))

    def _interrupt(self, epoch: int, step: int, sums: Tensor, elapsed: float) -> None:
        # totals over all ranks, so that the checkpoint resumes on any number of processes
        total = all_reduce_sum(sums.detach().clone(), self.ctx).cpu().tolist()
        self.next_epoch, self.next_step = epoch, step + 1
        self.partial = {"sums": total, "elapsed": elapsed}
        self.save("last")
        barrier(self.ctx)
        self._raise_interrupted(epoch, step + 1)

    def _raise_interrupted(self, epoch: int, step: int) -> None:
        signum = self._stop_signal or signal.SIGTERM
        name = signal.Signals(signum).name
        where = f"epoch {epoch}, step {step}" if step else f"the start of epoch {epoch}"
        raise TrainingInterrupted(
            f"stopped by {name}; checkpoint saved, the run continues at {where} with: "
            f"fcc train --resume {self.run_dir}", signum)

    # ----------------------------------------------------------------------------------- logging

    def _update_best(self, record: dict[str, Any], epoch: int) -> bool:
        val = record.get("val_top1")
        if val is None:
            return False
        if self.best["val_top1"] is None or val > self.best["val_top1"]:
            self.best = {"val_top1": val, "epoch": epoch}
            return True
        return False

    def _log(self, record: dict[str, Any]) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        line = json.dumps(clean) + "\n"
        try:
            with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
                f.write(line)
        except OSError as err:
            raise OutputError(f"cannot append to {self.run_dir / 'metrics.jsonl'}: {err.strerror or err}") from None
        if self.tb is not None:
            for key, value in clean.items():
                if key != "epoch" and isinstance(value, (int, float)):
                    self.tb.add_scalar(key, value, record["epoch"])
        parts = [f"epoch {record['epoch']}/{self.cfg.train.epochs}", f"lr {record['lr']:.4g}",
                 f"loss {_fmt(record['train_loss'], '.4f')}", f"acc {_fmt(record['train_acc'], '.2f')}"]
        parts += [f"{k} {v:.2f}" for k, v in record.items() if k.endswith("_top1") and v is not None]
        parts.append(f"{record['epoch_time']:.1f}s")
        tqdm.write("  ".join(parts))

    # -------------------------------------------------------------------------------- final eval

    def final_eval(self, split: str | None = None, which: str | None = None) -> dict[str, Any]:
        """Evaluate the final (or best) weights and write eval.json; returns its content."""
        split = split or self.cfg.eval.split
        which = which or self.cfg.eval.checkpoint
        path = self.run_dir / "checkpoints" / f"{which}.pt"
        epoch = self.next_epoch - 1
        if which == "best":
            if not path.exists():
                raise CheckpointError(f"eval.checkpoint: best, but {path} does not exist (best.pt is "
                                      "only kept when a validation split exists: set data.val_per_class)")
            state = load_checkpoint(path, map_location=self.device)
            load_model_state(unwrap(self.model), state["model"], str(path))
            epoch = int(state["next_epoch"]) - 1
        info = {"checkpoint": str(path.relative_to(self.run_dir)), "epoch": epoch}
        return evaluate_to_files(self.run_dir, self.cfg, unwrap(self.model), self.splits, self.ctx, split=split,
                                 info=info, amp_dtype=self.amp_dtype, loader=self.eval_loaders.get(split))
