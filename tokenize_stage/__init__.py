"""tokenize: the last stage. Tokenizer adapters (tokenizers.py), packing (packing.py), three phases:
per part, tokenize, pack and stage the samples (task.py); once, pack the leftovers of every part and
draw the release's permutation (shuffle.py); per part, write a slice of the shuffled samples in each
format (write.py, formats.py); then the manifest (manifest.py), which `gristmill tokens verify` checks."""

import fsspec
import numpy as np

from pipelines import io
from pipelines.errors import ConfigError
from pipelines.report_parts import bars
from pipelines.stage import CheckContext, Phase, PhaseContext, Stage
from tokenize_stage import formats
from tokenize_stage.config import FORMATS, TokenizeConfig
from tokenize_stage.manifest import write_manifest
from tokenize_stage.shuffle import ShuffleTask
from tokenize_stage.task import NAME, TokenizeTask, pad_id, token_dtype
from tokenize_stage.tokenizers import TokenizerError, load_tokenizer
from tokenize_stage.write import WriteTask


def release_tokenizer(release) -> str:
    """The tokenizer a release counts tokens with: this stage's, or the default when it has none."""
    cfg = getattr(release.stages, NAME)
    return (cfg or TokenizeConfig()).tokenizer


def phases(ctx: PhaseContext) -> list[Phase]:
    cfg = ctx.config(NAME)
    tasks = [TokenizeTask(s, cfg, ctx.upstream[s.part]) for s in ctx.shards]
    parts = tuple(s.part for s in ctx.shards)
    shuffle = ShuffleTask(ctx.release.output, cfg, parts, io.sha256_json([t.fingerprint() for t in tasks]))
    writers = [WriteTask(s, cfg, i, len(ctx.shards), shuffle.fingerprint()) for i, s in enumerate(ctx.shards)]
    folder = io.join(ctx.release.output, NAME)

    def manifest() -> None:
        for name in set(FORMATS) - set(cfg.formats):  # a format dropped from the config: its files go
            fs, path = fsspec.core.url_to_fs(io.join(folder, name))
            if fs.exists(path):
                fs.rm(path, recursive=True)
        tok = load_tokenizer(cfg.tokenizer, cfg.threads)
        mds_index = formats.merge_mds(folder, list(parts)) if "mds" in cfg.formats else None
        write_manifest(folder, tok, token_dtype(cfg, tok.vocab_size), pad_id(tok), cfg, list(parts), mds_index)

    return [Phase(NAME, (NAME,), tasks), Phase(f"{NAME} shuffle", (NAME,), [shuffle]),
            Phase(f"{NAME} write", (NAME,), writers, after=manifest)]


def check(cfg: TokenizeConfig, ctx: CheckContext) -> None:
    try:
        tok = load_tokenizer(cfg.tokenizer)
    except TokenizerError as exc:
        raise ConfigError(f"tokenizer: {exc}") from None
    for flag, token_id in (("eos", tok.eos_id), ("bos", tok.bos_id)):
        if getattr(cfg, flag) and token_id is None:
            raise ConfigError(f"{flag}: tokenizer {tok.name!r} has no {flag} token")
    dtype = token_dtype(cfg, tok.vocab_size)
    if tok.vocab_size - 1 > np.iinfo(dtype).max:
        raise ConfigError(f"dtype: {dtype.name} cannot hold the ids of {tok.name!r} (vocabulary of "
                          f"{tok.vocab_size:,}); use int32 or auto")
    if "mds" in cfg.formats:
        try:
            formats.import_streaming()
        except ImportError as exc:
            raise ConfigError(f"formats: mds needs mosaicml-streaming (pip install -e '.[mds]' and "
                              f"mosaicml-streaming==0.13.0 --no-deps; {exc})") from None
    if "megatron" in cfg.formats and not cfg.eos:
        raise ConfigError("eos: the megatron format marks document boundaries (and padding) with the end-of-text "
                          "token; set eos: true")


def report(con, output: str) -> list[str]:
    if not io.glob(output, f"{NAME}/_samples/*.parquet"):
        return []
    tokens, samples, padding = con.execute("SELECT sum(tokens), count(*), sum(padding) FROM samples").fetchone()
    per_source = con.execute("SELECT source, sum(tokens) FROM tokens GROUP BY 1 ORDER BY 1").fetchall()
    return ["<h2>Tokens</h2>", f"<p>{tokens} tokens in {samples} samples, {padding} padding</p>",
            bars([s for s, _ in per_source], [t for _, t in per_source], "tokens per source")]


STAGE = Stage(name=NAME, config=TokenizeConfig, check=check, phases=phases, report=report,
              views=(("tokens", "_provenance/*.parquet"), ("samples", "_samples/*.parquet"),
                     ("placement", "_placement/*.parquet")))
