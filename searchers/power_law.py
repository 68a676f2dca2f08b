"""DPL's learning-curve model (Kadra et al., "Scaling Laws for Hyperparameter Optimization", NeurIPS
2023): an ensemble of small networks, each mapping a configuration to the parameters of a power law
in the budget, ``loss(b) = alpha + beta * b**(-gamma)`` (beta, gamma >= 0: the loss falls with the
budget), trained on every observed (configuration, epoch, value) with an L1 loss. The ensemble's
spread is the uncertainty expected improvement reads.

Why this model (and not a GP over configuration and epoch): it is what the paper reports best
any-time results with on LCBench, one fit costs a fixed number of small gradient steps whatever the
number of observations (a GP's cost grows with their cube: at 25% of an LCBench grid's compute a run
has ~25,000 observed epochs), and its prediction for every configuration of a grid is one batched
forward pass. Settings are the paper's (its code's defaults): 5 members, 2 hidden layers of 128 units
with LeakyReLU, Adam at 1e-3, minibatches of 64, 250 epochs for the first fit and 20 to refine
(warm-started) after new observations, budgets divided by the largest. Ours, for cost (declared in
docs/lcbench-freeze-thaw/PLAN.md): a refine is at most ``MAX_REFINE_STEPS`` minibatches, and the
targets are standardized with the first fit's median and spread (the paper's are errors in [0, 1]).

The members are trained together as one batched network (``torch.bmm`` over the member axis): one
optimizer step for all five costs about what one member's does.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

MEMBERS = 5
HIDDEN = 128
LEARNING_RATE = 1e-3
BATCH = 64
FIRST_FIT_EPOCHS = 250
REFINE_EPOCHS = 20
MAX_REFINE_STEPS = 100  # a refine's minibatches at most (20 epochs of 64 up to 320 observations)


class PowerLawEnsemble:
    """``fit(x, budget, loss)`` on observations, ``predict(x, budget)`` -> (members, n) losses.
    ``x``: (n, features) in [0, 1]; ``budget``: (n,) in (0, 1]; ``loss``: lower is better."""

    def __init__(self, n_features: int, seed: int = 0, members: int = MEMBERS, hidden: int = HIDDEN):
        import torch

        self._torch = torch
        self._generator = torch.Generator().manual_seed(int(seed))
        self._draw = np.random.default_rng([int(seed), 7])

        def weight(*shape, fan_in):  # PyTorch's nn.Linear initialization, per member
            bound = 1.0 / math.sqrt(fan_in)
            return ((torch.rand(members, *shape, generator=self._generator) * 2 - 1) * bound).requires_grad_()

        self._params = [weight(n_features, hidden, fan_in=n_features), weight(1, hidden, fan_in=n_features),
                        weight(hidden, hidden, fan_in=hidden), weight(1, hidden, fan_in=hidden),
                        weight(hidden, 3, fan_in=hidden), weight(1, 3, fan_in=hidden)]
        self._optimizer = torch.optim.Adam(self._params, lr=LEARNING_RATE, fused=True)
        self.members = members
        self.fitted = False
        self._center, self._scale = 0.0, 1.0  # the targets' standardization, fixed at the first fit

    def _network(self, x):
        """x: (members, n, features) -> each member's three outputs (members, n, 3): alpha, and beta and gamma
        before their softplus."""
        functional, bmm = self._torch.nn.functional, self._torch.bmm
        w1, b1, w2, b2, w3, b3 = self._params
        h = functional.leaky_relu(bmm(x, w1) + b1)
        h = functional.leaky_relu(bmm(h, w2) + b2)
        return bmm(h, w3) + b3

    def _loss_at(self, x, budget):
        """x: (members, n, features), budget: (members, n) -> predicted losses (members, n)."""
        softplus = self._torch.nn.functional.softplus
        out = self._network(x)
        alpha, beta, gamma = out[..., 0], softplus(out[..., 1]), softplus(out[..., 2])
        return alpha + beta * budget.clamp_min(1e-6) ** (-gamma)

    @contextlib.contextmanager
    def _one_thread(self):
        """Its matrices are small: with torch's default thread per core, two replays on two cores ran
        10x slower than with one thread each. The caller's setting is restored."""
        torch, before = self._torch, self._torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def fit(self, x: np.ndarray, budget: np.ndarray, loss: np.ndarray) -> int:
        """Train on every observation: the paper's first fit, then warm-started refines. Returns the
        minibatch steps taken (what a fit costs)."""
        with self._one_thread():
            return self._fit(x, budget, loss)

    def _fit(self, x, budget, loss) -> int:
        torch = self._torch
        loss = np.asarray(loss, dtype=np.float64)
        if not self.fitted:
            spread = float(np.subtract(*np.percentile(loss, [75, 25])))
            self._center = float(np.median(loss))
            self._scale = spread if spread > 1e-12 else (float(np.std(loss)) or 1.0)
        n = len(loss)
        per_epoch = max(1, math.ceil(n / BATCH))
        steps = per_epoch * (REFINE_EPOCHS if self.fitted else FIRST_FIT_EPOCHS)
        if self.fitted:
            steps = min(steps, MAX_REFINE_STEPS)
        xs = torch.as_tensor(np.asarray(x, dtype=np.float32))
        bs = torch.as_tensor(np.asarray(budget, dtype=np.float32))
        ys = torch.as_tensor(((loss - self._center) / self._scale).astype(np.float32))
        size = min(BATCH, n)
        # each member its own minibatches (the ensemble's members differ by their start and their draws)
        picks = torch.as_tensor(self._draw.integers(0, n, size=(steps, self.members, size)))
        for step in range(steps):
            index = picks[step]
            predicted = self._loss_at(xs[index], bs[index])
            objective = (predicted - ys[index]).abs().mean(dim=1).sum()  # L1, each member's mean, summed
            self._adam_step(torch.autograd.grad(objective, self._params))
        self.fitted = True
        return steps

    def _adam_step(self, grads) -> None:
        """``Adam(fused=True).step()`` without the wrapper every call of it passes through (a profiler
        record, hooks, grad-mode switches, the per-call grouping): the same ``torch.optim.adam.adam``
        call on the optimizer's own state, so the numbers are Adam's to the bit (tests/test_freeze_thaw.py).
        A replay takes ~10,000 of these tiny steps, and the wrapper was a tenth of its time."""
        from torch.optim.adam import adam

        torch, state = self._torch, self._optimizer.state
        if not state:  # the first step creates Adam's state
            for param, grad in zip(self._params, grads):
                param.grad = grad
            self._optimizer.step()
            for param in self._params:
                param.grad = None
            return
        group = self._optimizer.param_groups[0]
        with torch.no_grad():
            adam(
                self._params, list(grads), [state[p]["exp_avg"] for p in self._params],
                [state[p]["exp_avg_sq"] for p in self._params], [], [state[p]["step"] for p in self._params],
                amsgrad=group["amsgrad"], has_complex=False, beta1=group["betas"][0], beta2=group["betas"][1],
                lr=group["lr"], weight_decay=group["weight_decay"], eps=group["eps"], maximize=group["maximize"],
                foreach=group["foreach"], capturable=group["capturable"], differentiable=group["differentiable"],
                fused=group["fused"], decoupled_weight_decay=group["decoupled_weight_decay"])

    def curve_params(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each member's power law for each configuration: (alpha, beta, gamma), each (members, n), in the
        standardized units; ``loss_at`` evaluates them at any budget without the network."""
        torch = self._torch
        with torch.no_grad(), self._one_thread():
            xs = torch.as_tensor(np.asarray(x, dtype=np.float32)).expand(self.members, -1, -1)
            out = self._network(xs).numpy().astype(np.float64)
        softplus = lambda v: np.logaddexp(0.0, v)  # noqa: E731 - torch's softplus, in numpy
        return out[..., 0], softplus(out[..., 1]), softplus(out[..., 2])

    def loss_at(self, params, budget) -> np.ndarray:
        """The losses (members, n) of ``curve_params``' laws at ``budget`` ((n,) or a scalar), in the
        observations' units."""
        alpha, beta, gamma = params
        return (alpha + beta * np.maximum(budget, 1e-6) ** -gamma) * self._scale + self._center

    def predict(self, x: np.ndarray, budget: np.ndarray) -> np.ndarray:
        """Each member's predicted loss (members, n), in the observations' units."""
        return self.loss_at(self.curve_params(x), np.asarray(budget, dtype=np.float64))

    # The optimizer and generators are rebuilt from the parameters on unpickling (--resume).
    def __getstate__(self):
        state = dict(self.__dict__)
        state["_params"] = [p.detach().numpy().copy() for p in self._params]
        state["_optimizer"] = self._optimizer.state_dict()
        state["_generator"] = self._generator.get_state()
        del state["_torch"]
        return state

    def __setstate__(self, state):
        import torch

        params = [torch.as_tensor(p).clone().requires_grad_() for p in state.pop("_params")]
        optimizer_state = state.pop("_optimizer")
        generator = torch.Generator()
        generator.set_state(state.pop("_generator"))
        self.__dict__.update(state, _torch=torch, _params=params, _generator=generator)
        self._optimizer = torch.optim.Adam(params, lr=LEARNING_RATE, fused=True)
        self._optimizer.load_state_dict(optimizer_state)


def log_expected_improvement(loss_members: np.ndarray, best_loss: float) -> np.ndarray:
    """log EI of each column of (members, n) predicted losses below ``best_loss``, the ensemble's mean and
    standard deviation taken as a normal (as DPL does). In logs (searchers/gp.py's stable form): once a
    trained configuration is the best, the members agree closely and plain EI underflows to 0 for most
    others, which would leave the choice among them to the order of the grid."""
    from searchers.gp import _log_h

    mean = loss_members.mean(axis=0)
    sd = np.maximum(loss_members.std(axis=0), 1e-9)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):  # _log_h computes both branches of a where
        return np.log(sd) + _log_h((best_loss - mean) / sd)
