"""The one wrapper around fastText models.

fasttext-wheel 0.9.2 with numpy 2 raises in `predict(str)`; `predict(list)` works, so everything
goes through `predict_batch`. Newlines are replaced by spaces because fastText treats a newline
as the end of the input.
"""

import functools
import os

import numpy as np


class FastTextModel:
    def __init__(self, path: str):
        import fasttext

        if not os.path.exists(path):
            raise FileNotFoundError(f"fastText model not found: {path}")
        fasttext.FastText.eprint = lambda *args, **kwargs: None  # silence the load_model warning
        self.path = path
        self._model = fasttext.load_model(path)

    def predict_batch(self, texts: list[str], k: int = 1) -> tuple[list[list[str]], list[np.ndarray]]:
        """Top-k labels (without '__label__') and their probabilities for each text."""
        if not texts:
            return [], []
        cleaned = [t.replace("\n", " ") for t in texts]
        labels, probs = self._model.predict(cleaned, k=k)
        return [[label.removeprefix("__label__") for label in row] for row in labels], list(probs)


@functools.lru_cache(maxsize=4)
def load(path: str) -> FastTextModel:
    """Loads a model once per process (each worker pays the load once)."""
    return FastTextModel(path)
