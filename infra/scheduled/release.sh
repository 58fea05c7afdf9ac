#!/usr/bin/env bash
# One scheduled release: build it, write its report, diff it against the release before it.
#   infra/scheduled/release.sh CONFIG [gristmill run options...]   e.g. --runner ray --address auto
# Run from the repository (the config's relative paths are relative to the working directory).
# Environment:
#   RELEASE_DATE   the release's date, default today in UTC (%Y%m%d)
#   RELEASES_ROOT  local or mounted folder holding the releases, default out/releases
#   RELEASE_PREFIX release names are PREFIX-DATE, default web; the output is RELEASES_ROOT/PREFIX-DATE
# PREVIOUS is the newest finished release (one with manifest.json) named before this one.
set -euo pipefail

config=${1:?usage: release.sh CONFIG [gristmill run options...]}
shift
export RELEASE_DATE=${RELEASE_DATE:-$(date -u +%Y%m%d)}
export RELEASES_ROOT=${RELEASES_ROOT:-out/releases}
prefix=${RELEASE_PREFIX:-web}
out="$RELEASES_ROOT/$prefix-$RELEASE_DATE"

gristmill run "$config" --output "$out" --quiet "$@"
gristmill report "$out"

previous=""
for dir in "$RELEASES_ROOT/$prefix"-*; do   # sorted by name, so by date
    if [[ -f "$dir/manifest.json" && "$dir" < "$out" ]]; then previous=$dir; fi
done
if [[ -n "$previous" ]]; then
    gristmill diff "$previous" "$out"
else
    echo "no release before $out to diff against"
fi
