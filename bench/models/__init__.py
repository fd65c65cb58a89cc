"""Network architectures, by registry name."""

from bench.models.resnet import ARCHITECTURES, CifarResNet, build_model

__all__ = ["ARCHITECTURES", "CifarResNet", "build_model"]
