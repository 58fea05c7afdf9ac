"""gristmill pipelines: config, stage graph, readers, runners, stats and CLI."""

__version__ = "0.1.0"
