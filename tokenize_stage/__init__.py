"""Tokenizer adapters, packing and token-shard writers/readers (built in the tokenize issue)."""
