"""The training step captured once as a CUDA graph and replayed (``training.cuda_graph``)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..core.errors import CocktailError

if TYPE_CHECKING:
    from .engine import Trainer

log = logging.getLogger("cocktailparty")


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
    capture, so a graphed run trains on exactly the batches an eager one would.
    """

    WARMUP_STEPS = 3

    def __init__(self, trainer: "Trainer", batch: dict):
        self.trainer = trainer
        groups = trainer.optimizer.param_groups
        self.lrs = [torch.tensor(float(g["lr"]), device=trainer.device) for g in groups]
        self.static = {k: v.to(trainer.device).clone() if isinstance(v, torch.Tensor) else v
                       for k, v in batch.items()}
        saved = self._snapshot()
        floats = [g["lr"] for g in groups]
        torch.cuda.synchronize()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        try:
            for group, lr in zip(groups, self.lrs):
                group["lr"] = lr  # capturable Adam reads a tensor lr when the graph replays
            with torch.cuda.stream(stream):
                for _ in range(self.WARMUP_STEPS):
                    trainer.optimizer.zero_grad(set_to_none=True)
                    self._body()
            torch.cuda.current_stream().wait_stream(stream)
            self._restore(saved)
            trainer.optimizer.zero_grad(set_to_none=True)  # backward allocates .grad from the graph pool
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.outputs = self._body()
        except Exception as err:
            raise CocktailError(f"training.cuda_graph: the training step could not be captured as a CUDA graph "
                                f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
                                f"train without it: --set training.cuda_graph=false") from err
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

    def _snapshot(self) -> dict:
        trainer = self.trainer
        tensors = {f"m/{k}": v.detach().clone() for k, v in trainer.trainee.state_dict(keep_vars=True).items()}
        for i, state in enumerate(trainer.optimizer.state.values()):
            tensors.update({f"o/{i}/{k}": v.clone() for k, v in state.items() if isinstance(v, torch.Tensor)})
        return {"tensors": tensors, "had_state": len(trainer.optimizer.state),
                "rng": (torch.get_rng_state(), torch.cuda.get_rng_state(trainer.device))}

    @torch.no_grad()
    def _restore(self, saved: dict) -> None:
        trainer, tensors = self.trainer, saved["tensors"]
        for k, v in trainer.trainee.state_dict(keep_vars=True).items():
            v.detach().copy_(tensors[f"m/{k}"])
        for i, state in enumerate(trainer.optimizer.state.values()):
            for k, v in state.items():
                if isinstance(v, torch.Tensor):
                    # State that the warm-up created starts from zero, as a fresh Adam's would.
                    v.copy_(tensors[f"o/{i}/{k}"]) if saved["had_state"] else v.zero_()
        torch.set_rng_state(saved["rng"][0])
        torch.cuda.set_rng_state(saved["rng"][1], trainer.device)

    def __call__(self, batch: dict) -> dict[str, torch.Tensor]:
        for k, v in batch.items():
            if isinstance(v, torch.Tensor):
                self.static[k].copy_(v, non_blocking=True)
        for group, lr in zip(self.trainer.optimizer.param_groups, self.lrs):
            lr.fill_(group["lr"])
        self.graph.replay()
        return {k: v.clone() for k, v in self.outputs.items()}
