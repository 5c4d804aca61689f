"""The training step captured once as a CUDA graph and replayed (``training.cuda_graph``)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..core.cuda_graphs import release_generator_from_capture, graphs_off
from ..core.errors import CocktailError, describe_error
from .state import StepSnapshot

if TYPE_CHECKING:
    from .engine import Trainer

log = logging.getLogger("cocktailparty")


class CaptureFailed(CocktailError):
    """The step could not be captured; what the attempt changed has been undone."""


class GraphedStep:
    """The training step (forward, loss, backward, clipping, optimizer update) captured once as
    a CUDA graph, then replayed for every batch: PyTorch's whole-network capture recipe.

    The batch is copied into static input tensors; the graph writes the loss terms into static
    outputs. Dropout draws fresh numbers at each replay (graph-safe Philox offsets). The update
    is captured reading each param group's lr from a device tensor, filled from the group's
    (float) lr before every replay, so a schedule may change the lr at any step without a new
    capture; everywhere else (schedulers, checkpoints, logs) the lr stays a plain float.
    A non-finite gradient cannot skip a replayed update: its gradients are zeroed instead (Adam's
    moments decay for one step, nothing is poisoned); the trainer counts it as skipped. Capturing runs
    three warm-up steps on the first batch (torch.compile and cuBLAS set themselves up there);
    their effect on the weights, optimizer, buffers and random streams is undone before the
    capture, so a graphed run trains on exactly the batches an eager one would. A capture that
    fails undoes them too and raises :class:`CaptureFailed`, so the trainer may go on without it.
    """

    WARMUP_STEPS = 3

    def __init__(self, trainer: "Trainer", batch: dict):
        self.trainer = trainer
        groups = trainer.optimizer.param_groups
        self.lrs = [torch.tensor(float(g["lr"]), device=trainer.device) for g in groups]
        self.static = {k: v.to(trainer.device).clone() if isinstance(v, torch.Tensor) else v
                       for k, v in batch.items()}
        saved = StepSnapshot(trainer.trainee, trainer.optimizer, trainer.device)
        floats = [g["lr"] for g in groups]
        torch.cuda.synchronize()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        try:
            for group, lr in zip(groups, self.lrs):
                group["lr"] = lr  # capturable Adam reads a tensor lr when the graph replays
            # The warm-ups repeat one shape: the model must not capture graphs of its own there.
            with torch.cuda.stream(stream), graphs_off():
                for _ in range(self.WARMUP_STEPS):
                    trainer.optimizer.zero_grad(set_to_none=True)
                    self._body()
            torch.cuda.current_stream().wait_stream(stream)
            saved.restore()
            trainer.optimizer.zero_grad(set_to_none=True)  # backward allocates .grad from the graph pool
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.outputs = self._body()
        except Exception as err:
            torch.cuda.synchronize()  # the warm-up's side stream may still be writing
            release_generator_from_capture(trainer.device)  # else the eager steps' dropout raises
            saved.restore()
            raise CaptureFailed(f"training.cuda_graph: the training step could not be captured as a CUDA graph "
                                f"({describe_error(err)}); train without it: --set training.cuda_graph=false") from err
        finally:
            for group, lr in zip(groups, floats):
                group["lr"] = lr
        log.info("training step captured as a CUDA graph")

    def _body(self) -> dict[str, torch.Tensor]:
        trainer = self.trainer
        with trainer._autocast(cache=False):  # a weight-cast cache filled in capture would go stale
            terms = trainer.wrapped(self.static)
        terms["loss"].backward()
        clip = trainer.t.grad_clip_norm
        norm = nn.utils.clip_grad_norm_(trainer.params, float(clip) if clip else float("inf"))
        finite = torch.isfinite(norm)
        grads = [p.grad for p in trainer.params if p.grad is not None]
        torch._foreach_copy_(grads, [torch.where(finite, g, torch.zeros((), device=g.device)) for g in grads])
        trainer.optimizer.step()
        out = {k: v.detach().float() for k, v in terms.items()}
        out["grad_norm"] = norm.detach().float()
        return out

    def __call__(self, batch: dict) -> dict[str, torch.Tensor]:
        for k, v in batch.items():
            if isinstance(v, torch.Tensor):
                self.static[k].copy_(v, non_blocking=True)
        for group, lr in zip(self.trainer.optimizer.param_groups, self.lrs):
            lr.fill_(group["lr"])
        self.graph.replay()
        return {k: v.clone() for k, v in self.outputs.items()}
