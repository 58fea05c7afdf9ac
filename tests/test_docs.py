"""docs/config.md is generated from the config models; it must be current and cover every key."""

from pydantic import RootModel

from pipelines import config_docs
from pipelines.config import ReleaseConfig


def _fields(model, key=""):
    """(dotted key, field) of every key a config can have; a list model (stages.select) by its items."""
    for name, field in model.model_fields.items():
        if issubclass(model, RootModel):
            yield from (pair for sub in config_docs._models(field.annotation) for pair in _fields(sub, f"{key}[]"))
        elif not field.exclude:
            yield f"{key}.{name}".lstrip("."), field
            for sub in config_docs._models(field.annotation):
                yield from _fields(sub, f"{key}.{name}")


def test_config_reference_is_current():
    assert config_docs.render() == config_docs.TARGET.read_text(), \
        "docs/config.md is stale: run `python -m pipelines.config_docs`"


def test_every_config_key_is_described():
    keys = dict(_fields(ReleaseConfig))
    assert "stages.select[].top_fraction" in keys and "stages.filter.c4.min_num_sentences" in keys
    missing = [key for key, field in keys.items() if not field.description]
    assert not missing, f"keys without Field(description=...): {missing}"
