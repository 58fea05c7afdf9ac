"""Beam pipeline options from `runner.options`, checked by Beam's own parser before any work starts."""

import contextlib
import io
import logging
import re


class BeamOptionsError(ValueError):
    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key  # the runner config key at fault, e.g. "options.flink_mastr"


def pipeline_options(runner):
    """PipelineOptions for a `kind: beam` runner config.

    Without `options.runner` the pipeline runs on Beam's DirectRunner with `workers` threads (no
    downloads, nothing to install); any other runner (FlinkRunner, SparkRunner, DataflowRunner, ...)
    takes its settings from `options`, passed through as Beam's command-line flags would be.
    """
    logging.disable(logging.WARNING)  # Beam warns at import about optional Google Cloud clients it lacks
    try:
        from apache_beam.options.pipeline_options import PipelineOptions
        from apache_beam.runners import create_runner
    except ImportError:
        raise BeamOptionsError("kind", "beam needs `pip install gristmill[beam]`") from None
    finally:
        logging.disable(logging.NOTSET)

    settings = dict(runner.options)
    if settings.get("runner", "DirectRunner") == "DirectRunner":
        settings.setdefault("direct_num_workers", runner.workers)
        # threads suffice: each hands its task to the worker's pool of task processes (see beam_runner)
        settings.setdefault("direct_running_mode", "multi_threading" if runner.workers > 1 else "in_memory")
    settings.setdefault("pickle_library", "cloudpickle")
    logging.getLogger("apache_beam.options.pipeline_options").setLevel(logging.ERROR)  # we report unknown keys
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):  # argparse prints its usage and exits on a bad value
            options = PipelineOptions.from_dictionary(settings)
            known = options.get_all_options()
    except (SystemExit, ValueError, TypeError) as exc:
        reason = (said.getvalue().strip().splitlines()[-1:] or [str(exc)])[0].removeprefix("-: error: ")
        flag = re.search(r"argument --(\w+)", reason)
        raise BeamOptionsError(f"options.{flag.group(1)}" if flag else "options", reason) from None
    for key in settings:
        if key not in known:
            raise BeamOptionsError(f"options.{key}", "not a Beam pipeline option")
    try:
        create_runner(settings.get("runner", "DirectRunner"))
    except ValueError as exc:
        raise BeamOptionsError("options.runner", str(exc)) from None
    return options
