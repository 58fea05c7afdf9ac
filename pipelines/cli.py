"""gristmill command line: run, validate, stats, report, ablate, diff, tokens, preselect, classifier, dataman.

Each command imports what it needs when it runs, so `gristmill --help` starts fast.
"""

import argparse
import shlex
import sys

from pipelines import __version__


def _load(args):
    """The config with command-line overrides applied; raises ConfigError."""
    from pipelines.config import load_config

    overrides = {}
    if getattr(args, "runner", None) is not None:
        overrides["runner.kind"] = args.runner
    if getattr(args, "workers", None) is not None:
        overrides["runner.workers"] = args.workers
    if getattr(args, "address", None) is not None:
        overrides["runner.address"] = args.address
    if getattr(args, "output", None) is not None:
        overrides["output"] = args.output
    return load_config(args.config, overrides)


def cmd_validate(args) -> int:
    cfg = _load(args)
    print(f"{args.config}: OK (release {cfg.release}, stages: {', '.join(cfg.stages.enabled())}, "
          f"config sha256 {cfg.content_hash()[:12]})")
    return 0


def cmd_run(args) -> int:
    from pipelines import stats
    from pipelines.lock import ReleaseLocked
    from pipelines.release import ShardFailures, plan, run_release

    cfg = _load(args)
    print(f"release {cfg.release}: {len(plan(cfg))} shards, stages {', '.join(cfg.stages.enabled())}, "
          f"runner {cfg.runner.kind} x{cfg.runner.workers} -> {cfg.output}", file=sys.stderr)
    try:
        log = run_release(cfg, progress=not args.quiet, force=args.force)
    except (ShardFailures, ReleaseLocked) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"done in {log['seconds']:.1f}s ({log['skipped']} of {log['tasks']} tasks already complete)\n",
          file=sys.stderr)
    print(stats.format_funnel(stats.funnel(cfg.output)))
    return 0


def _no_release(output: str) -> bool:
    """True (after saying so) when `output` holds no release statistics."""
    from pipelines import stats

    if stats.stage_names(output):
        return False
    print(f"error: {output}: no release statistics found (expected <stage>/_stats/*.parquet)", file=sys.stderr)
    return True


def cmd_stats(args) -> int:
    import duckdb

    from pipelines import stats

    if _no_release(args.output):
        return 1
    if args.sql:
        try:
            result = stats.connect(args.output).sql(args.sql)
        except duckdb.Error as exc:
            print(f"SQL error: {exc}", file=sys.stderr)
            return 1
        if result is not None:
            result.show(max_rows=args.max_rows, max_width=200)
        return 0
    print(stats.format_funnel(stats.funnel(args.output)))
    return 0


def cmd_tokens_decompress(args) -> int:
    from pipelines import io
    from tokenize_stage import NAME
    from tokenize_stage.manifest import decompress

    restored = decompress(io.join(args.output, NAME))
    print(f"restored {len(restored)} shards from .bin.zst (sha256 checked against {NAME}/manifest.json)")
    return 0


def cmd_tokens_verify(args) -> int:
    from pipelines import io
    from tokenize_stage import NAME
    from tokenize_stage.verify import summary, verify

    folder = io.join(args.output, NAME)
    problems = verify(folder)
    if problems:
        print(problems[0], file=sys.stderr)
        if len(problems) > 1:
            print(f"... and {len(problems) - 1} more problems", file=sys.stderr)
        return 1
    print(summary(folder))
    return 0


def cmd_preselect_train(args) -> int:
    from pipelines.preselect_train import load_spec, train

    info = train(load_spec(args.spec))
    d = info["documents"]
    held = info["held_out"]
    print(f"PreSelect scorer written to {load_spec(args.spec).output}: {d['positives']} positives, "
          f"{d['negatives']} negatives; held-out ({held['positives']} positives, {held['negatives']} negatives) "
          f"balanced accuracy {held['balanced_accuracy']:.3f} (majority {held['majority_baseline']:.2f}), "
          f"5-fold {info['cross_validation']['mean']:.3f}; thresholds {info['thresholds']}")
    return 0


def cmd_classifier_train(args) -> int:
    from pipelines.classifier_train import load_spec, train

    spec = load_spec(args.spec)
    try:
        info = train(spec)
    except (ValueError, OSError) as exc:  # too few documents, an output that cannot be written
        print(f"error: {args.spec}: {exc}", file=sys.stderr)
        return 2
    d, h = info["documents"], info["held_out"]
    print(f"classifier written to {spec.output} (labels positive, negative): {d['positives']} positives, "
          f"{d['negatives']} negatives, {d['train']} trained on; held-out ({h['positives']} positives, "
          f"{h['negatives']} negatives): precision {h['precision']:.3f}, recall {h['recall']:.3f}, balanced accuracy "
          f"{h['balanced_accuracy']:.3f}, ROC AUC {h['roc_auc']:.3f}")
    return 0


def cmd_dataman_build(args) -> int:
    from pipelines.dataman_build import TeacherFailed, build, load_spec
    from scorers.dataman import RATINGS

    spec = load_spec(args.spec)
    try:
        report = build(spec)
    except TeacherFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    d = report["documents"]
    print(f"DataMan students written to {spec.output}: {d['rated']} rated, {d['failed']} failed, "
          f"{d['held_out']} held out")
    languages = report.get("languages") or {}
    if languages:
        print("  languages: " + ", ".join(f"{lang} {n}" for lang, n in sorted(languages.items(), key=lambda x: -x[1])))
    for name in RATINGS + ("domain",):  # the models; the report also has `documents` and `languages`
        r = report[name]
        print(f"  {name:<28} held-out accuracy {r['held_out_accuracy']}  (majority class {r['majority_class']})")
    return 0


def cmd_report(args) -> int:
    from pipelines import io
    from pipelines.report import render

    if _no_release(args.output):
        return 1
    target = args.html or io.join(args.output, "report.html")
    io.write_bytes_atomic(target, render(args.output).encode())
    print(target)
    return 0


def cmd_ablate(args) -> int:
    from pipelines.ablate import main_ablate

    if _no_release(args.output):
        return 1
    command = shlex.split(args.command) if args.command else None
    return main_ablate(args.output, args.seeds, args.target, args.proxy, command, args.timeout, args.chars)


def cmd_diff(args) -> int:
    import json

    from pipelines.diff import ReleaseError, diff, format_diff

    try:
        d = diff(args.a, args.b)
    except ReleaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(d, indent=2) if args.json else format_diff(d))
    return 0


def cmd_show(args) -> int:
    from pipelines.show import ShowError, main

    try:
        return main(args.output, args.stage, args.reason, args.cluster, args.id, args.n, args.seed, args.json,
                    None if args.full else args.chars)
    except ShowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gristmill", description="Raw web crawl in, training-ready shards out.")
    parser.add_argument("--version", action="version", version=f"gristmill {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="build a release from its config (resumes where a previous run stopped)")
    validate = sub.add_parser("validate", help="check a config and its inputs without running")
    for command in (run, validate):
        command.add_argument("config")
        command.add_argument("--runner", choices=["local", "ray", "beam"])
        command.add_argument("--workers", type=int)
        command.add_argument("--address", help="Ray cluster address (e.g. auto)")
        command.add_argument("--output", help="override the config's output")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("--force", action="store_true",
                     help="take over the release lock (OUT/_lock) of a run that is gone, e.g. on a host that died")
    run.set_defaults(fn=cmd_run)
    validate.set_defaults(fn=cmd_validate)

    st = sub.add_parser("stats", help="print the funnel of a release, or run SQL over its views")
    st.add_argument("output")
    st.add_argument("--sql", help="DuckDB SQL over views docs_<stage>, rejects, errors, stats")
    st.add_argument("--max-rows", type=int, default=40)
    st.set_defaults(fn=cmd_stats)

    tokens = sub.add_parser("tokens", help="token shard utilities")
    tokens_sub = tokens.add_subparsers(dest="tokens_command", required=True)
    decompress = tokens_sub.add_parser("decompress", help="restore .bin files from their .bin.zst copies")
    decompress.add_argument("output")
    decompress.set_defaults(fn=cmd_tokens_decompress)
    verify = tokens_sub.add_parser("verify", help="check the token shards against the manifest: sha256, sizes, "
                                                  "the .idx, token ids, padding and counts")
    verify.add_argument("output")
    verify.set_defaults(fn=cmd_tokens_verify)

    pre = sub.add_parser("preselect", help="PreSelect scorer")
    pre_sub = pre.add_subparsers(dest="preselect_command", required=True)
    pre_train = pre_sub.add_parser("train", help="label a sample by predictive strength and train the fastText scorer")
    pre_train.add_argument("spec", help="YAML spec, e.g. configs/preselect/sample.yaml")
    pre_train.set_defaults(fn=cmd_preselect_train)

    clf = sub.add_parser("classifier", help="quality classifiers (fastText)")
    clf_sub = clf.add_subparsers(dest="classifier_command", required=True)
    clf_train = clf_sub.add_parser("train", help="a fastText classifier of target-like text against the pool "
                                                 "(DCLM's recipe), with held-out metrics")
    clf_train.add_argument("spec", help="YAML spec, e.g. configs/classifier/sample.yaml")
    clf_train.set_defaults(fn=cmd_classifier_train)

    dm = sub.add_parser("dataman", help="DataMan-style raters")
    dm_sub = dm.add_subparsers(dest="dataman_command", required=True)
    dm_build = dm_sub.add_parser("build", help="rate a sample with the teacher LLM, train the fastText students")
    dm_build.add_argument("spec")
    dm_build.set_defaults(fn=cmd_dataman_build)

    report = sub.add_parser("report", help="write one offline HTML page: funnel, rejects, histograms, mixture, tokens")
    report.add_argument("output")
    report.add_argument("--html", help="where to write it (default OUT/report.html)")
    report.set_defaults(fn=cmd_report)

    ab = sub.add_parser("ablate", help="does the selection help? train a proxy on the selected text and on random "
                                       "selections of the same size from the pool, compare on a target")
    ab.add_argument("output")
    ab.add_argument("--seeds", type=int, default=5, help="random selections (seeds 0..N-1)")
    ab.add_argument("--target", help="a source of the release by name, or a jsonl/parquet/warc path or glob "
                                     "(default: the mixture's CLIMB validation source)")
    ab.add_argument("--proxy", choices=["ngram", "command"],
                    help="ngram (default): byte n-gram LM, bits per byte; command: the CLIMB command-proxy "
                         "contract (default when --command is given)")
    ab.add_argument("--command", help="the trainer for --proxy command, e.g. 'python train.py --steps 200' "
                                      "(default: the release's stages.mixture.climb.search.proxy.command)")
    ab.add_argument("--timeout", type=float, help="seconds per command run (default: the release's, else 600)")
    ab.add_argument("--chars", type=int, help="characters per side, at most (default: all of the selection's)")
    ab.set_defaults(fn=cmd_ablate)

    df = sub.add_parser("diff", help="what changed from release A to B: config, inputs, kept per stage, "
                                     "rejects by reason, tokens per source, outputs (by sha256)")
    df.add_argument("a", help="output folder (or fsspec URI) of release A")
    df.add_argument("b", help="output folder (or fsspec URI) of release B")
    df.add_argument("--json", action="store_true", help="print the differences as JSON")
    df.set_defaults(fn=cmd_diff)

    sh = sub.add_parser("show", help="print a seeded sample of documents: kept by a stage, rejected for a reason, "
                                     "of a cluster, or one by id, with the text the stage saw (escaped)")
    sh.add_argument("output")
    sh.add_argument("--stage", help="kept by this stage (default the last that wrote documents); with --reason or "
                                    "--id: at this stage")
    which = sh.add_mutually_exclusive_group()
    which.add_argument("--reason", help="rejects with this reason or prefix, e.g. c4.curly_bracket, c4, filter, "
                                        "duplicate; shown with the text the rejecting stage received")
    which.add_argument("--cluster", help="the mixture's documents of this cluster (CLIMB)")
    which.add_argument("--id", help="this document: kept by the last stage, or its reject or error row")
    sh.add_argument("-n", type=int, default=5, help="documents to show (default 5)")
    sh.add_argument("--seed", type=int, default=0, help="the sample's seed: order by md5(seed:id)")
    sh.add_argument("--chars", type=int, default=600, help="characters shown at each end of a long text")
    sh.add_argument("--full", action="store_true", help="the whole text")
    sh.add_argument("--json", action="store_true", help="one JSON object per line (ASCII)")
    sh.set_defaults(fn=cmd_show)
    return parser


def main(argv: list[str] | None = None) -> int:
    from pipelines.config import ConfigError

    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
