"""Hugging Face causal LMs as a PreSelect loss backend: bits per character of each document.

Loaded from a local folder only (nothing is downloaded). Each document is scored in consecutive
windows of the model's context length; the context restarts at each window (the paper slides a
window with overlap, which costs ~3.7x more compute for a slightly lower loss; the ranking between
models, which is all PreSelect uses, is what matters). Runs on a GPU when one is present.
"""

import math


class HFCausalLM:
    def __init__(self, path: str, device: str | None = None, batch_windows: int = 8):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            self.model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True).eval()
        except OSError as exc:
            raise ValueError(f"{path}: not a local Hugging Face causal LM folder: {exc}") from exc
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device)
        config = self.model.config
        self.window = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", 1024)
        self.batch_windows = batch_windows

    def _nats(self, ids: list[int]) -> float:
        import torch

        total = 0.0
        windows = [ids[i : i + self.window] for i in range(0, len(ids), self.window)]
        with torch.no_grad():
            for window in windows:
                if len(window) < 2:
                    continue
                x = torch.tensor([window], device=self.device)
                logits = self.model(x).logits[0, :-1].float()
                total += float(torch.nn.functional.cross_entropy(logits, x[0, 1:], reduction="sum"))
        return total

    def bits_per_char(self, texts: list[str]) -> list[float]:
        out = []
        for text in texts:
            ids = self.tokenizer(text, add_special_tokens=True)["input_ids"]
            if self.tokenizer.bos_token_id is not None and (not ids or ids[0] != self.tokenizer.bos_token_id):
                ids = [self.tokenizer.bos_token_id] + ids  # so the first real token is predicted too
            out.append(self._nats(ids) / math.log(2) / max(len(text), 1))
        return out
