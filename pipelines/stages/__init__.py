"""The per-document stages (extract, filter, score, select): each module exports its `STAGE`."""
