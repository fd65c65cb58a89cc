"""CIFAR-style ResNet of method.md §3: one input channel, 7x7 stride-1 conv0 + BN + ReLU, no
max-pool, four stages of basic blocks, global average pool, linear head. Inputs in [0,1] are
mapped to 5*(x-0.5) inside, so attacks and noise work in [0,1] pixel space.

``features`` returns the five taps of the similarity regularizer (conv0, stages 1-4) and works
at any input size (28x28, 32x32, 36x64 stimuli)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.registry import Registry

TAPS = ("conv0", "stage1", "stage2", "stage3", "stage4")


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


INPUT_SCALES = ("centered", "unit")  # 5(x - 0.5) inside the network (method.md §3), or x as given


class CifarResNet(nn.Module):
    def __init__(
        self,
        blocks: tuple[int, ...],
        num_classes: int = 10,
        width: int = 64,
        in_channels: int = 1,
        input_scale: str = "centered",
    ):
        super().__init__()
        if input_scale not in INPUT_SCALES:
            raise ValueError(f"input_scale {input_scale!r}: expected one of {INPUT_SCALES}")
        self.config = {
            "blocks": list(blocks),
            "num_classes": num_classes,
            "width": width,
            "in_channels": in_channels,
            "input_scale": input_scale,
        }
        self.conv0 = nn.Sequential(nn.Conv2d(in_channels, width, 7, 1, 3, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        stages, c_in = [], width
        for i, n in enumerate(blocks):
            c_out = width * 2**i
            stages.append(
                nn.Sequential(
                    *(
                        BasicBlock(c_in if b == 0 else c_out, c_out, (1 if i == 0 else 2) if b == 0 else 1)
                        for b in range(n)
                    )
                )
            )
            c_in = c_out
        self.stages = nn.ModuleList(stages)
        self.head = nn.Linear(c_in, num_classes)

    def tap_channels(self) -> list[int]:
        """Channels of each tap (conv0, then each stage), without running the network."""
        width = self.config["width"]
        return [width] + [width * 2**i for i in range(len(self.stages))]

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The regularizer's taps, in ``TAPS`` order."""
        out = [self.conv0(5.0 * (x - 0.5) if self.config["input_scale"] == "centered" else x)]
        for stage in self.stages:
            out.append(stage(out[-1]))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)[-1].mean(dim=(2, 3)))


ARCHITECTURES: Registry[tuple[int, ...]] = Registry("architecture")
ARCHITECTURES.register("resnet18")((2, 2, 2, 2))
ARCHITECTURES.register("resnet34")((3, 4, 6, 3))


def build_model(
    arch: str, num_classes: int, width: int = 64, in_channels: int = 1, input_scale: str = "centered"
) -> CifarResNet:
    return CifarResNet(ARCHITECTURES.get(arch), num_classes, width, in_channels, input_scale)
