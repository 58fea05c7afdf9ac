"""The error a bad config raises: before any work starts, naming the file, the key and the reason."""


class ConfigError(ValueError):
    """A bad config. Stage checks raise it with the key relative to their block (`against[0]: ...`);
    the loader adds the file and `stages.<name>.` in front."""
