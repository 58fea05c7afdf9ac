"""Published web-text quality rules, each a module with its config model and a check function."""
