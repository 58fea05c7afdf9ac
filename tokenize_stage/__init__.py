"""tokenize: the last stage. Tokenizer adapters (tokenizers.py), packing (packing.py), the per-shard
task (task.py) and the token format it writes, Megatron shards with a manifest (megatron/)."""

from pipelines import io
from pipelines.errors import ConfigError
from pipelines.report_parts import bars
from pipelines.stage import CheckContext, Phase, PhaseContext, Stage
from tokenize_stage.config import TokenizeConfig
from tokenize_stage.megatron.manifest import write_manifest
from tokenize_stage.megatron.writer import dtype_for_vocab
from tokenize_stage.task import NAME, TokenizeTask
from tokenize_stage.tokenizers import TokenizerError, load_tokenizer


def release_tokenizer(release) -> str:
    """The tokenizer a release counts tokens with: this stage's, or the default when it has none."""
    cfg = getattr(release.stages, NAME)
    return (cfg or TokenizeConfig()).tokenizer


def phases(ctx: PhaseContext) -> list[Phase]:
    cfg = ctx.config(NAME)
    tasks = [TokenizeTask(s, cfg, ctx.upstream[s.part]) for s in ctx.shards]
    folder = io.join(ctx.release.output, NAME)

    def manifest() -> None:
        tok = load_tokenizer(cfg.tokenizer, cfg.threads)
        write_manifest(folder, tok, dtype_for_vocab(tok.vocab_size), cfg, [s.part for s in ctx.shards])

    return [Phase(NAME, (NAME,), tasks, after=manifest)]


def check(cfg: TokenizeConfig, ctx: CheckContext) -> None:
    try:
        tok = load_tokenizer(cfg.tokenizer)
    except TokenizerError as exc:
        raise ConfigError(f"tokenizer: {exc}") from None
    for flag, token_id in (("eos", tok.eos_id), ("bos", tok.bos_id)):
        if getattr(cfg, flag) and token_id is None:
            raise ConfigError(f"{flag}: tokenizer {tok.name!r} has no {flag} token")


def report(con, output: str) -> list[str]:
    if not io.glob(output, f"{NAME}/_samples/*.parquet"):
        return []
    tokens, samples, padding = con.execute("SELECT sum(tokens), count(*), sum(padding) FROM samples").fetchone()
    per_source = con.execute("SELECT source, sum(tokens) FROM tokens GROUP BY 1 ORDER BY 1").fetchall()
    return ["<h2>Tokens</h2>", f"<p>{tokens} tokens in {samples} samples, {padding} padding</p>",
            bars([s for s, _ in per_source], [t for _, t in per_source], "tokens per source")]


STAGE = Stage(name=NAME, config=TokenizeConfig, check=check, phases=phases, report=report,
              views=(("tokens", "_provenance/*.parquet"), ("samples", "_samples/*.parquet")))
