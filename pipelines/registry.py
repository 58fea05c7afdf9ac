"""Every stage, in pipeline order: the only list of them. A stage whose block is in a release's
`stages:` runs; the others do not. Adding a stage is a module exporting a `Stage` and one entry here."""

import tokenize_stage
from pipelines import decontaminate, dedup, line_dedup, mixture, url_dedup
from pipelines.stages import extract, filter, score, select

STAGES = (extract.STAGE, filter.STAGE, decontaminate.STAGE, score.STAGE, select.STAGE, url_dedup.STAGE,
          line_dedup.STAGE, dedup.STAGE, mixture.STAGE, tokenize_stage.STAGE)
