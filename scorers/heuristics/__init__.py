"""Published web-text quality rules: each module has its config model, its check function, and the
`Rule` (or, for Gopher, two) that the filter stage runs."""
