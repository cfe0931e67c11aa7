"""The model zoo, built from plain-data specs (:mod:`.zoo`)."""

from analogsam.models.zoo import VGG8, CifarResNet, LeNet5, MLP, build_model, make_spec, model_names

__all__ = ["MLP", "LeNet5", "CifarResNet", "VGG8", "build_model", "make_spec", "model_names"]
