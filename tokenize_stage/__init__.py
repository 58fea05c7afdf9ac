"""tokenize: the last stage. Tokenizer adapters (tokenizers.py), packing (packing.py), three phases:
per part, tokenize, pack and stage the samples (task.py); once, pack the leftovers of every part and
draw the release's permutation (shuffle.py); per part, write a slice of the shuffled samples in each
format (write.py, formats.py); then the manifest (manifest.py), which `gristmill tokens verify` checks."""

import fsspec
import numpy as np

from pipelines import io
from pipelines.errors import ConfigError
from pipelines.report_parts import bars, grouped_bars, log2_label, table, top_series
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
    """Samples, tokens, padding and utilization (from the `samples` view), tokens per source, and per document
    (the `tokens` view, one row per packed piece): its length in tokens per source and the pieces it was cut in."""
    if not io.glob(output, f"{NAME}/_samples/*.parquet"):
        return []
    samples, tokens, padding, per_sample = con.execute(
        "SELECT count(*), sum(tokens), sum(padding), avg(pieces) FROM samples").fetchone()
    tokens, padding = int(tokens or 0), int(padding or 0)
    utilization = round(tokens / (tokens + padding), 4) if tokens + padding else 0.0
    parts = ["<h2>Tokens</h2>", f"<p>{tokens} tokens in {samples} samples, {padding} padding</p>"]
    rows = [("samples", samples), ("tokens", tokens), ("padding", padding), ("utilization", utilization),
            ("pieces per sample (mean)", round(float(per_sample or 0), 3))]
    if not io.glob(output, f"{NAME}/_provenance/*.parquet"):
        return parts + [table(["", "value"], rows, "tokens_summary")]
    pieces, documents, split = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE doc_token_start = 0), "
        "count(*) FILTER (WHERE doc_token_start = 0 AND tokens < doc_tokens) FROM tokens").fetchone()
    rows += [("documents", documents), ("pieces", pieces), ("documents cut in pieces", split),
             ("pieces per document (mean)", round(pieces / documents, 3) if documents else 0.0)]
    parts.append(table(["", "value"], rows, "tokens_summary"))
    per_source = con.execute("SELECT source, sum(tokens) FROM tokens GROUP BY 1 ORDER BY 1").fetchall()
    parts.append(bars([s for s, _ in per_source], [t for _, t in per_source], "tokens per source"))
    # a document (an upsampled copy too) is its first piece (doc_token_start = 0): its length in tokens, in
    # floor(log2) bins, per source
    lengths = con.execute(
        "SELECT coalesce(source, '(none)'), floor(log2(greatest(doc_tokens, 1)))::INT AS b, count(*) FROM tokens "
        "WHERE doc_token_start = 0 GROUP BY ALL ORDER BY 2, 1").fetchall()
    if lengths:
        bins = list(range(min(b for _, b, _ in lengths), max(b for _, b, _ in lengths) + 1))
        labels, series = top_series(lengths, bins)
        parts.append(grouped_bars([log2_label(b) for b in labels], series, "tokens per document",
                                  xlabel="tokens (at least)", ylabel="documents"))
    cut = con.execute(
        "SELECT pieces, sum(copies)::BIGINT FROM (SELECT doc_id, "
        "count(*) FILTER (WHERE doc_token_start = 0) AS copies, count(*) // greatest(copies, 1) AS pieces "
        "FROM tokens GROUP BY doc_id) GROUP BY 1 ORDER BY 1").fetchall()
    if cut:
        parts += [grouped_bars([p for p, _ in cut], {"documents": [n for _, n in cut]}, "pieces per document",
                               xlabel="pieces", ylabel="documents"),
                  table(["pieces", "documents"], cut, "pieces_per_document")]
    return parts


STAGE = Stage(name=NAME, config=TokenizeConfig, check=check, phases=phases, report=report,
              views=(("tokens", "_provenance/*.parquet"), ("samples", "_samples/*.parquet"),
                     ("placement", "_placement/*.parquet")))
