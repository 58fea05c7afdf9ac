"""The one wrapper around fastText models: train, save, load, batch-predict.

fasttext-wheel 0.9.2 with numpy 2 raises in `predict(str)`; `predict(list)` works, so everything
goes through `predict_batch`. Newlines are replaced by spaces because fastText treats a newline
as the end of the input.
"""

import functools
import os
import tempfile

import numpy as np


def preprocess(text: str) -> str:
    """The same at train and predict time: newlines become spaces (fastText reads one line per example)."""
    return text.replace("\n", " ")


class FastTextModel:
    def __init__(self, path: str):
        import fasttext

        if not os.path.exists(path):
            raise FileNotFoundError(f"fastText model not found: {path}")
        fasttext.FastText.eprint = lambda *args, **kwargs: None  # silence the load_model warning
        self.path = path
        self._model = fasttext.load_model(path)
        self.labels = [label.removeprefix("__label__") for label in self._model.get_labels()]

    def predict_batch(self, texts: list[str], k: int = 1) -> tuple[list[list[str]], list[np.ndarray]]:
        """Top-k labels (without '__label__') and their probabilities for each text."""
        if not texts:
            return [], []
        labels, probs = self._model.predict([preprocess(t) for t in texts], k=k)
        return [[label.removeprefix("__label__") for label in row] for row in labels], list(probs)

    def probabilities(self, texts: list[str], label: str) -> np.ndarray:
        """P(label) for each text. With numpy 2 the batch binding returns the top probability repeated for
        every label when k > 1, so a two-label model asks the batch for k=1 (P(other) = 1 - P(top)), and a
        model of more labels asks the one-text binding, which returns every (probability, label) pair."""
        if label not in self.labels:
            raise ValueError(f"{self.path}: no label {label!r}; the model's labels are {self.labels}")
        if len(self.labels) == 2:
            labels, probs = self.predict_batch(texts, k=1)
            return np.array([float(p[0]) if row[0] == label else 1.0 - float(p[0]) for row, p in zip(labels, probs)])
        wanted = f"__label__{label}"
        return np.array([next((p for p, name in self._model.f.predict(preprocess(t) + "\n", -1, 0.0, "strict")
                               if name == wanted), 0.0) for t in texts], dtype=float)


def train_supervised(texts: list[str], labels: list[str], path: str, *, lr: float = 0.1, dim: int = 100,
                     epoch: int = 5, word_ngrams: int = 2, bucket: int = 2_000_000, seed: int = 0,
                     zero_eos: bool = True) -> FastTextModel:
    """Trains with one thread (deterministic for a seed), saves to `path`, returns the loaded model.

    zero_eos: fastText learns the end-of-line token `</s>` as a feature present in every document;
    zeroing its input row removes that length bias (as PreSelect does).
    """
    import fasttext

    fasttext.FastText.eprint = lambda *args, **kwargs: None
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as fh:
        for text, label in zip(texts, labels):
            fh.write(f"__label__{label} {preprocess(text)}\n")
        train_file = fh.name
    try:
        model = fasttext.train_supervised(input=train_file, lr=lr, dim=dim, epoch=epoch, wordNgrams=word_ngrams,
                                          minn=0, maxn=0, bucket=bucket, thread=1, seed=seed, verbose=0)
    finally:
        os.unlink(train_file)
    if zero_eos:
        eos = model.get_word_id("</s>")
        if eos >= 0:
            matrix = model.get_input_matrix()
            matrix[eos] = 0
            model.set_matrices(matrix, model.get_output_matrix())
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    model.save_model(path)
    load.cache_clear()
    return load(path)


@functools.lru_cache(maxsize=4)
def load(path: str) -> FastTextModel:
    """Loads a model once per process (each worker pays the load once)."""
    return FastTextModel(path)
