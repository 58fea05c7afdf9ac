"""Earlier releases named in a stage's `against` (dedup, line_dedup): a glob expands, when the config
is loaded, to the finished releases it matches (those holding the stage's index file), never to the
release being built; a glob may match nothing (the first release of a series)."""

import os

from pipelines import io


def location(path: str) -> str:
    """A release's folder or URI in one spelling, to compare two of them."""
    return path.rstrip("/") if "://" in path else os.path.abspath(path)


def expand_against(against: list[str], output: str, index: str) -> list[str]:
    """`against` with its globs expanded; `index` is the index file's path inside a release."""
    own = location(output)
    releases: list[str] = []
    for pattern in against:
        if not io.is_glob(pattern):
            releases.append(pattern)
            continue
        found = [p[: -len(f"/{index}")] for p in io.expand_paths(f"{pattern.rstrip('/')}/{index}")]
        releases += [r for r in found if location(r) != own and r not in releases]
    return releases
