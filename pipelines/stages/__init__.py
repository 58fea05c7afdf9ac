"""Per-document stages in pipeline order. Each module has NAME, ADDED_COLUMNS, applies_to(format), run(docs, cfg).

Adding a stage: one module here, one entry in this list and one field in config.StagesConfig.
"""

from pipelines.stages import extract, filter, score

STAGES = {module.NAME: module for module in (extract, filter, score)}
