"""The predictive model of method.md §2, from the field's own library (neuralpredictors 0.3.0):
a Stacked2dCore convolutional core and a FullGaussian2d readout (a learned position per neuron),
with an optional shifter (pupil position moves the readout grid) and modulator (behaviour
scales each neuron's gain). Poisson loss; early stopping on validation correlation."""

from __future__ import annotations

import collections
import collections.abc
import copy
import warnings
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import ConfigDict, Field
from torch import nn

from bench.neural.recordings import Recordings


def _neuralpredictors():
    """neuralpredictors 0.3.0 imports collections.Iterable, removed in Python 3.10: alias the
    abc names before importing it (the only shim it needs for the parts used here)."""
    # its own deprecated defaults warn on every model built; the behaviour is what we want
    warnings.filterwarnings("ignore", "LaplaceL2 Regularizer is deprecated", UserWarning)
    warnings.filterwarnings("ignore", "The averaged value of regularizer will be used", UserWarning)
    for name in ("Iterable", "Mapping", "MutableMapping", "Sequence"):
        if not hasattr(collections, name):
            setattr(collections, name, getattr(collections.abc, name))
    from neuralpredictors.layers.cores import Stacked2dCore
    from neuralpredictors.layers.readouts import FullGaussian2d

    return Stacked2dCore, FullGaussian2d


@dataclass(frozen=True)
class ModelParams:
    __pydantic_config__ = ConfigDict(extra="forbid")
    channels: Annotated[int, Field(ge=1, le=1024)] = 16
    layers: Annotated[int, Field(ge=1, le=32)] = 3
    input_kern: Annotated[int, Field(ge=1, le=63)] = 9
    hidden_kern: Annotated[int, Field(ge=1, le=63)] = 7
    gamma_input: Annotated[float, Field(ge=0, le=1e4)] = 1.0  # Laplace smoothness of the first layer
    # neuralpredictors' default 1.0 swamps the Poisson loss at this scale (stack.md)
    feature_reg_weight: Annotated[float, Field(ge=0, le=1e4)] = 0.01
    lr: Annotated[float, Field(gt=0, le=10)] = 5e-3
    batch_size: Annotated[int, Field(ge=1, le=65_536)] = 64
    max_epochs: Annotated[int, Field(ge=1, le=10_000)] = 40
    patience: Annotated[int, Field(ge=1, le=10_000)] = 5
    shifter: bool = True
    modulator: bool = True


class PredictiveModel(nn.Module):
    def __init__(
        self,
        params: ModelParams,
        image_shape: tuple[int, int],
        n_neurons: int,
        mean_response: torch.Tensor,
        behavior_stats: tuple[torch.Tensor, torch.Tensor] | None,
        shifter: bool,
    ):
        super().__init__()
        Stacked2dCore, FullGaussian2d = _neuralpredictors()
        self.core = Stacked2dCore(
            input_channels=1,
            hidden_channels=params.channels,
            input_kern=params.input_kern,
            hidden_kern=params.hidden_kern,
            layers=params.layers,
            gamma_input=params.gamma_input,
            gamma_hidden=0.0,
            final_nonlinearity=True,
        )
        with torch.no_grad():
            shape = self.core(torch.zeros(1, 1, *image_shape)).shape[1:]
        self.readout = FullGaussian2d(
            tuple(shape),
            n_neurons,
            bias=True,
            init_mu_range=0.3,
            init_sigma=0.3,
            gauss_type="isotropic",
            feature_reg_weight=params.feature_reg_weight,
            mean_activity=mean_response,
        )
        self.shifter = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2), nn.Tanh()) if shifter else None
        self.modulator = None
        if behavior_stats is not None:
            self.register_buffer("b_mean", behavior_stats[0])
            self.register_buffer("b_std", behavior_stats[1])
            self.modulator = nn.Linear(len(behavior_stats[0]), n_neurons)
            nn.init.zeros_(self.modulator.weight)
            nn.init.zeros_(self.modulator.bias)

    def forward(self, x, behavior=None, pupil_center=None):
        shift = self.shifter(pupil_center) if self.shifter is not None and pupil_center is not None else None
        y = F.elu(self.readout(self.core(x), shift=shift)) + 1
        if self.modulator is not None and behavior is not None:
            y = y * torch.exp(self.modulator((behavior - self.b_mean) / self.b_std))
        return y

    def regularizer(self):
        return self.core.regularizer() + self.readout.regularizer()


def correlation(pred: np.ndarray, resp: np.ndarray) -> np.ndarray:
    """Pearson correlation per neuron (columns); 0 where either side is constant."""
    p, r = pred - pred.mean(0), resp - resp.mean(0)
    den = np.sqrt((p**2).sum(0) * (r**2).sum(0))
    return np.where(den > 0, (p * r).sum(0) / np.where(den > 0, den, 1), 0.0)


@dataclass
class FittedModel:
    model: PredictiveModel
    val_correlation: np.ndarray  # per neuron, validation trials
    test_correlation: np.ndarray  # per neuron, held-out oracle trials: the quality v_a
    epochs: int
    seed: int
    pupil_mean: torch.Tensor | None = None  # the training trials' mean eye position (for the shifter)

    @torch.no_grad()
    def predict(self, images: np.ndarray, batch: int = 256) -> np.ndarray:
        """Responses to images at the mean behaviour and mean eye position of the training trials
        (the modulator's gains and the shifter's offset at their averages, as the method's
        predictive model is used), not at gain 1 and no shift."""
        self.model.eval()
        x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
        out = []
        for s in range(0, len(x), batch):
            xb = x[s : s + batch]
            behavior = self.model.b_mean.expand(len(xb), -1) if self.model.modulator is not None else None
            pupil = (
                self.pupil_mean.expand(len(xb), -1)
                if self.model.shifter is not None and self.pupil_mean is not None
                else None
            )
            out.append(self.model(xb, behavior, pupil).numpy())
        return np.concatenate(out)


def _tensors(rec: Recordings, mask: np.ndarray):
    idx = np.where(mask)[0]
    x = torch.from_numpy(rec.images[rec.trial_image[idx]])
    y = torch.from_numpy(rec.responses[idx])
    b = torch.from_numpy(rec.behavior[idx]) if rec.behavior is not None else None
    pc = torch.from_numpy(rec.pupil_center[idx]) if rec.pupil_center is not None else None
    return x, y, b, pc


@torch.no_grad()
def _predict_trials(model, x, b, pc, batch=256):
    model.eval()
    return torch.cat(
        [
            model(x[s : s + batch], None if b is None else b[s : s + batch], None if pc is None else pc[s : s + batch])
            for s in range(0, len(x), batch)
        ]
    ).numpy()


def fit(rec: Recordings, params: ModelParams, seed: int, progress=None) -> FittedModel:
    """Train on the 'train' tier, stop early on mean validation correlation, score on 'test'."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x, y, b, pc = _tensors(rec, rec.tiers == "train")
    xv, yv, bv, pcv = _tensors(rec, rec.tiers == "validation")
    use_b = params.modulator and b is not None
    stats = (b.mean(0), b.std(0).clamp_min(1e-6)) if use_b else None
    model = PredictiveModel(
        params, rec.images.shape[2:], rec.n_neurons, y.mean(0), stats, params.shifter and pc is not None
    )
    b = b if use_b else None
    bv = bv if use_b else None
    pc, pcv = (pc, pcv) if model.shifter is not None else (None, None)
    opt = torch.optim.Adam(model.parameters(), lr=params.lr)
    best, best_corr, stale, epoch = None, -np.inf, 0, 0
    for epoch in range(1, params.max_epochs + 1):
        model.train()
        order = torch.randperm(len(y), generator=gen)
        for s in range(0, len(y), params.batch_size):
            i = order[s : s + params.batch_size]
            out = model(x[i], None if b is None else b[i], None if pc is None else pc[i])
            loss = (out - y[i] * torch.log(out + 1e-8)).mean() + model.regularizer() / len(y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        corr = float(correlation(_predict_trials(model, xv, bv, pcv), yv.numpy()).mean())
        if progress is not None:
            progress(epoch, corr)
        if corr > best_corr:
            best, best_corr, stale = copy.deepcopy(model.state_dict()), corr, 0
        else:
            stale += 1
            if stale >= params.patience:
                break
    model.load_state_dict(best)
    xt, yt, bt, pct = _tensors(rec, rec.tiers == "test")
    val = correlation(_predict_trials(model, xv, bv, pcv), yv.numpy())
    test = correlation(
        _predict_trials(model, xt, bt if use_b else None, pct if model.shifter is not None else None), yt.numpy()
    )
    return FittedModel(model, val, test, epoch, seed, pc.mean(0) if pc is not None else None)
