"""The mixture stage: budgeted, stratified sampling of the release (DataMan selection, CLIMB weights)."""
