"""The Hugging Face loss backend, on tiny GPT-2 models made in the test (random weights, local tokenizer)."""

import numpy as np
import pytest

from tests.warc_factory import PROSE

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def tiny_gpt2(folder, seed: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(PROSE * 10, trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                                           initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>",
                                                eos_token="<|endoftext|>")
    torch.manual_seed(seed)
    config = transformers.GPT2Config(vocab_size=len(fast), n_positions=64, n_embd=32, n_layer=2, n_head=2)
    model = transformers.GPT2LMHeadModel(config)
    fast.save_pretrained(folder)
    model.save_pretrained(folder)
    return str(folder)


def test_bits_per_char_from_a_real_loaded_model(tmp_path):
    from scorers.hf_lm import HFCausalLM

    lm = HFCausalLM(tiny_gpt2(tmp_path / "m", seed=0), device="cpu")
    long_text = " ".join(PROSE * 4)  # longer than one 64-token window
    bpc = lm.bits_per_char([PROSE[0], long_text])
    assert all(np.isfinite(b) and b > 0 for b in bpc)
    assert lm.bits_per_char([PROSE[0]]) == bpc[:1]  # deterministic in eval mode
    with pytest.raises(ValueError, match="not a local Hugging Face causal LM folder"):
        HFCausalLM(str(tmp_path / "nothing"))


def test_preselect_with_a_hugging_face_family(tmp_path):
    from pipelines.preselect_train import load_spec, train
    from tests.conftest import SAMPLE

    small, other = tiny_gpt2(tmp_path / "a", seed=1), tiny_gpt2(tmp_path / "b", seed=2)
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"""
sample: {{name: s, paths: ["{SAMPLE}/SAMPLE-00001.warc.gz"], format: warc}}
max_docs: 80
models:
  - {{kind: hf, path: {small}, benchmark: 1}}
  - {{kind: hf, path: {other}, benchmark: 2}}
  - {{kind: ngram, order: 3, benchmark: 3}}
fasttext: {{epoch: 2, bucket: 10000}}
output: {tmp_path / 'p.bin'}
""")
    info = train(load_spec(str(spec)))
    assert info["documents"]["seed"] == 40 and sum(info["strength_histogram"].values()) == 40
