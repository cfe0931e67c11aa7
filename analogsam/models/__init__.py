"""The model zoo, built from plain-data specs (:mod:`.zoo`; one module per family of architectures), and
the parameter roles of any network (:mod:`.roles`: which layers go onto tiles, which tensors are crossbar
weights), which the conversion, the optimizers and the robustness probes all read."""

from analogsam.models.language import CharLM
from analogsam.models.mobile import DSCNN, MobileNetTiny
from analogsam.models.recurrent import LSTMClassifier
from analogsam.models.transformer import VisionTransformer
from analogsam.models.zoo import MLP, VGG8, CifarResNet, LeNet5, build_model, make_spec, model_names

__all__ = [
    "MLP",
    "LeNet5",
    "CifarResNet",
    "VGG8",
    "DSCNN",
    "MobileNetTiny",
    "VisionTransformer",
    "LSTMClassifier",
    "CharLM",
    "build_model",
    "make_spec",
    "model_names",
]
