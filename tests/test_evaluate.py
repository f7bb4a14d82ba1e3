"""Evaluation against sklearn's metrics, on a model with known predictions and on a trained one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, recall_score

from mnistcore.config import TrainConfig
from mnistcore.data import MnistData
from mnistcore.evaluate import Evaluation, cell_indices, evaluate, select_predictions
from mnistcore.model import ShallowNet
from mnistcore.train import train

# A hand-built model reads which of the first ten pixels is lit; MAPPING says what it then predicts.
MAPPING = {j: j for j in range(10)} | {3: 5, 7: 1}
N = 60


def _known_model() -> ShallowNet:
    model = ShallowNet(16)
    with torch.no_grad():
        model.fc1.weight.zero_()
        model.fc2.weight.zero_()
        model.fc2.bias.zero_()
        model.fc1.bias.fill_(0.5)  # keeps a dark pixel's unit (normalised -0.42) just above zero
        for j in range(10):
            model.fc1.weight[j, j] = 1.0
            model.fc2.weight[MAPPING[j], j] = 3.0  # small enough that no confidence rounds to 1.0
    return model.eval()


def _known_images() -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Image i lights pixel i % 10 with a brightness that grows with i; returns images, labels, brightness."""
    lit = np.arange(N) % 10
    brightness = 40 + 3 * np.arange(N)  # brighter -> larger logit margin -> more confident
    images = torch.zeros(N, 28, 28, dtype=torch.uint8)
    images.view(N, 784)[torch.arange(N), torch.from_numpy(lit)] = torch.from_numpy(brightness).to(torch.uint8)
    return images, torch.from_numpy(lit).long(), brightness


def _assert_matches_sklearn(ev: Evaluation) -> None:
    classes = list(range(10))
    np.testing.assert_array_equal(ev.confusion, confusion_matrix(ev.labels, ev.predictions, labels=classes))
    assert ev.accuracy == pytest.approx(accuracy_score(ev.labels, ev.predictions))
    np.testing.assert_allclose(
        ev.precision, precision_score(ev.labels, ev.predictions, labels=classes, average=None, zero_division=0)
    )
    np.testing.assert_allclose(
        ev.recall, recall_score(ev.labels, ev.predictions, labels=classes, average=None, zero_division=0)
    )
    np.testing.assert_allclose(
        ev.f1, f1_score(ev.labels, ev.predictions, labels=classes, average=None, zero_division=0)
    )
    np.testing.assert_array_equal(ev.support, np.bincount(ev.labels, minlength=10))
    assert ev.errors == int((ev.labels != ev.predictions).sum()) == ev.confusion.sum() - np.trace(ev.confusion)


def test_known_predictions() -> None:
    images, labels, _ = _known_images()
    ev = evaluate(_known_model(), images, labels)
    expected_pred = np.array([MAPPING[int(y)] for y in labels])
    np.testing.assert_array_equal(ev.predictions, expected_pred)
    np.testing.assert_array_equal(ev.labels, labels.numpy())
    expected_confusion = np.zeros((10, 10), dtype=np.int64)
    for y, p in zip(labels.numpy(), expected_pred, strict=True):
        expected_confusion[y, p] += 1
    np.testing.assert_array_equal(ev.confusion, expected_confusion)
    assert ev.errors == 12 and ev.accuracy == pytest.approx(48 / 60)  # the 3s and 7s, 6 of each
    assert ev.precision[3] == 0 and ev.recall[3] == 0  # never predicted: zero, not NaN
    assert ev.precision[5] == pytest.approx(0.5) and ev.recall[5] == 1
    assert ev.f1[3] == 0 and ev.f1[5] == pytest.approx(2 * 0.5 * 1 / 1.5)  # harmonic mean, 0 (not NaN) when empty
    _assert_matches_sklearn(ev)


def test_probabilities_and_confidence() -> None:
    images, labels, brightness = _known_images()
    model = _known_model()
    ev = evaluate(model, images, labels)
    assert ev.probabilities.shape == (N, 10) and ev.probabilities.dtype == np.float32
    np.testing.assert_allclose(ev.probabilities.sum(1), 1, rtol=1e-5)
    np.testing.assert_array_equal(ev.predictions, ev.probabilities.argmax(1))
    np.testing.assert_allclose(ev.confidence, ev.probabilities.max(1))
    assert len(set(ev.confidence.tolist())) == N  # no ties, so the orders below are fully determined
    # Within a class, brighter pixel -> more confident: the construction's promise holds.
    for c in range(10):
        rows = np.flatnonzero(labels.numpy() == c)
        assert list(np.argsort(ev.confidence[rows])) == list(np.argsort(brightness[rows]))


def test_cell_indices_most_confident_first() -> None:
    images, labels, brightness = _known_images()
    ev = evaluate(_known_model(), images, labels)
    expected = sorted(np.flatnonzero(labels.numpy() == 3), key=lambda i: -brightness[i])
    assert list(cell_indices(ev, 3, 5)) == expected
    assert list(cell_indices(ev, 0, 0)) == sorted(np.flatnonzero(labels.numpy() == 0), key=lambda i: -brightness[i])
    empty = cell_indices(ev, 3, 3)
    assert empty.size == 0 and np.issubdtype(empty.dtype, np.integer)
    # Every image sits in exactly one cell.
    assert sorted(np.concatenate([cell_indices(ev, t, p) for t in range(10) for p in range(10)])) == list(range(N))


def _random_evaluation(n: int = 300, seed: int = 0) -> Evaluation:
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(10, 0.3), size=n).astype(np.float32)
    probs[::7] = probs[0]  # repeated rows: confidence ties must keep index order
    labels = rng.integers(0, 10, n)
    pred = probs.argmax(1)
    classes = list(range(10))
    return Evaluation(
        labels=labels,
        predictions=pred,
        probabilities=probs,
        confusion=confusion_matrix(labels, pred, labels=classes),
        accuracy=float((labels == pred).mean()),
        precision=precision_score(labels, pred, labels=classes, average=None, zero_division=0),
        recall=recall_score(labels, pred, labels=classes, average=None, zero_division=0),
        support=np.bincount(labels, minlength=10),
        f1=f1_score(labels, pred, labels=classes, average=None, zero_division=0),
    )


def _reference(
    ev: Evaluation, correct: bool, true: int | None, pred: int | None, min_conf: float, most_confident_first: bool
) -> list[int]:
    conf = ev.probabilities[np.arange(len(ev.labels)), ev.predictions]
    keep = [
        i
        for i in range(len(ev.labels))
        if (ev.labels[i] == ev.predictions[i]) == correct
        and (true is None or ev.labels[i] == true)
        and (pred is None or ev.predictions[i] == pred)
        and conf[i] >= min_conf
    ]
    sign = -1 if most_confident_first else 1
    return sorted(keep, key=lambda i: (sign * conf[i], i))


@pytest.mark.parametrize(
    ("correct", "true", "pred", "min_conf", "first"),
    [
        (False, None, None, 0.0, True),
        (True, None, None, 0.0, True),
        (False, 4, None, 0.0, True),
        (False, None, 2, 0.0, False),
        (False, 4, 9, 0.0, True),
        (True, 6, None, 0.5, False),
        (False, None, None, 0.7, True),
        (False, None, None, 1.01, True),
    ],
)
def test_select_predictions_matches_reference(
    correct: bool, true: int | None, pred: int | None, min_conf: float, first: bool
) -> None:
    ev = _random_evaluation()
    got = select_predictions(
        ev, correct=correct, true=true, pred=pred, min_confidence=min_conf, most_confident_first=first
    )
    assert list(got) == _reference(ev, correct, true, pred, min_conf, first)


def test_select_predictions_default_is_all_errors() -> None:
    ev = _random_evaluation(seed=1)
    got = select_predictions(ev)
    assert len(got) == ev.errors
    assert set(got) == set(np.flatnonzero(ev.labels != ev.predictions))
    conf = ev.confidence[got]
    assert np.all(conf[:-1] >= conf[1:])
    assert set(select_predictions(ev)) | set(select_predictions(ev, correct=True)) == set(range(len(ev.labels)))


@pytest.fixture(scope="module")
def trained(tiny_data: MnistData) -> ShallowNet:
    return train(TrainConfig(hidden=32, epochs=2, batch_size=32, lr=3e-3, device="cpu"), tiny_data).model


def test_trained_model_matches_sklearn(trained: ShallowNet, tiny_data: MnistData) -> None:
    ev = evaluate(trained, tiny_data.test_images, tiny_data.test_labels)
    assert ev.confusion.sum() == len(tiny_data.test_labels)
    assert ev.accuracy > 0.5
    _assert_matches_sklearn(ev)
    # Same numbers as running the model by hand.
    from mnistcore.normalize import normalize

    with torch.no_grad():
        by_hand = trained(normalize(tiny_data.test_images)).argmax(1).numpy()
    np.testing.assert_array_equal(ev.predictions, by_hand)


def test_mismatched_lengths_are_refused(trained: ShallowNet, tiny_data: MnistData) -> None:
    with pytest.raises(ValueError, match="200 images but 199 labels"):
        evaluate(trained, tiny_data.test_images, tiny_data.test_labels[:-1])
