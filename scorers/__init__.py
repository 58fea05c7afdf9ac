"""Everything that puts a number or a label on a document.

Heuristic quality rules (Gopher, C4, FineWeb), language id and the fastText wrapper.
Nothing here imports `pipelines`: stages call these as a library.
"""
