"""The token format: Megatron-LM indexed datasets with a manifest (writer, reader, manifest; README.md)."""
