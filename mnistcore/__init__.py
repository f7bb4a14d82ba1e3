"""MNIST Lab engine: data, model, training, evaluation, drawn-digit preprocessing, saved runs.

Nothing in this package imports Streamlit: the dashboard and the CLI are views over it.
"""

from mnistcore.config import PRESETS, TrainConfig
from mnistcore.data import MnistData, load_mnist, provision_mnist
from mnistcore.evaluate import Evaluation, cell_indices, evaluate, select_predictions
from mnistcore.model import ShallowNet
from mnistcore.normalize import MEAN, STD, normalize
from mnistcore.predict import predict_prepared
from mnistcore.preprocess import PreparedDigit, prepare_digit
from mnistcore.runs import RunError, RunInfo, RunStore
from mnistcore.train import BatchEvent, EpochEvent, TrainResult, train

__all__ = [
    "MEAN",
    "PRESETS",
    "STD",
    "BatchEvent",
    "EpochEvent",
    "Evaluation",
    "MnistData",
    "PreparedDigit",
    "RunError",
    "RunInfo",
    "RunStore",
    "ShallowNet",
    "TrainConfig",
    "TrainResult",
    "cell_indices",
    "evaluate",
    "load_mnist",
    "normalize",
    "predict_prepared",
    "prepare_digit",
    "provision_mnist",
    "select_predictions",
    "train",
]
