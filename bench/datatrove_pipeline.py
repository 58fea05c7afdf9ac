"""datatrove's equivalent of gristmill's extract + filter (the FineWeb recipe), run inside bench/.venv-peers.

Prints one JSON line: documents read and kept.
"""

import argparse
import glob
import json
import os

from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.extractors import Trafilatura
from datatrove.pipeline.filters import (
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
    LanguageFilter,
)
from datatrove.pipeline.readers import WarcReader
from datatrove.pipeline.writers import JsonlWriter


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--input", required=True, help="glob of WARC files")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    files = sorted(glob.glob(args.input))
    folder = os.path.dirname(files[0])
    pattern = os.path.basename(args.input)
    pipeline = [
        WarcReader(folder, glob_pattern=pattern),
        Trafilatura(favour_precision=True),  # datatrove's defaults, as in its FineWeb example
        LanguageFilter(languages=["en"], language_threshold=0.65),
        GopherRepetitionFilter(),
        GopherQualityFilter(),
        C4QualityFilter(filter_no_terminal_punct=False),
        FineWebQualityFilter(),
        JsonlWriter(f"{args.out}/output"),
    ]
    LocalPipelineExecutor(pipeline, tasks=len(files), workers=args.workers, logging_dir=f"{args.out}/logs").run()
    with open(f"{args.out}/logs/stats.json") as fh:
        stats = json.load(fh)
    read = next(s for s in stats if "READER" in s["name"])["stats"]["documents"]["total"]
    kept = next(s for s in stats if "WRITER" in s["name"])["stats"]["total"]
    print(json.dumps({"docs_read": read, "docs_kept": kept}))


if __name__ == "__main__":
    main()
