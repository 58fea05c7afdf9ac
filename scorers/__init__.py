"""Everything that puts a number or a label on a document, as a library (nothing here imports `pipelines`).

- `rule.py`: the one shape of a filter rule; the rules are `heuristics/` (Gopher repetition and
  quality, C4, FineWeb, URL block list), `langid.py` (language id) and `pii.py` (redaction).
- `preselect.py`, `ngram_lm.py`, `hf_lm.py`: PreSelect's predictive strength and scorer, and the LMs
  that label it.
- `dataman/`: the DataMan teacher (any OpenAI-compatible endpoint) and its fastText students.
- `embed.py`: document embeddings for CLIMB's clusters.
- `fasttext_model.py`: the fastText wrapper (train, load once per process, batch predict).
"""
