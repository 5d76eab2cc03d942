"""cnnkit.nn: Torch7-style modules (explicit forward/backward) with PyTorch's names."""

from .deconvnet import deconvnet
from .layers import (
    AvgPool2d,
    BatchNorm2d,
    Conv2d,
    ConvTranspose2d,
    Dropout,
    Flatten,
    Linear,
    LocalResponseNorm,
    LogSoftmax,
    LPPool2d,
    MaxPool2d,
    MaxUnpool2d,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
)
from .losses import CrossEntropyLoss, MSELoss
from .module import Module, Parameter, Sequential
from .syncbn import SyncBatchNorm2d

__all__ = [
    "Module",
    "Parameter",
    "Sequential",
    "Linear",
    "Conv2d",
    "ConvTranspose2d",
    "MaxPool2d",
    "MaxUnpool2d",
    "AvgPool2d",
    "LPPool2d",
    "ReLU",
    "Sigmoid",
    "Tanh",
    "Softmax",
    "LogSoftmax",
    "Flatten",
    "Dropout",
    "BatchNorm2d",
    "SyncBatchNorm2d",
    "LocalResponseNorm",
    "CrossEntropyLoss",
    "MSELoss",
    "deconvnet",
]
