"""The offline smoke model: a tiny Qwen2-style causal LM with a byte-level BPE tokenizer trained
locally on the training texts. Nothing is downloaded.

It exercises the fine-tuning and generation machinery end to end on a CPU in seconds. It is a
smoke model, NOT a predictor worth using: its weights start random and it trains on a handful of
examples, so its predictions are noise.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

TINY_MODEL = "tiny-random"
EOS_TOKEN = "<|endoftext|>"
SMOKE_WARNING = (
    "base_model 'tiny-random' is a randomly initialised smoke model for testing the machinery, "
    "not a useful next-edit predictor; set finetune.base_model to a real model (e.g. "
    "Qwen/Qwen2.5-Coder-7B) for meaningful results"
)

log = logging.getLogger(__name__)


def train_tokenizer(texts: Iterable[str], *, vocab_size: int = 1024):
    """A byte-level BPE tokenizer (GPT-2/Qwen style) trained on `texts`, as a transformers
    `PreTrainedTokenizerFast` whose EOS and padding token is `<|endoftext|>`. Every byte is in the
    initial alphabet, so any text encodes, seen in training or not."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS_TOKEN, pad_token=EOS_TOKEN, clean_up_tokenization_spaces=False
    )


def kv_heads(num_heads: int) -> int:
    """Key/value heads of the tiny model: half the query heads (grouped-query attention, as real
    models), all of them for an odd count (half would not divide it)."""
    return num_heads // 2 if num_heads % 2 == 0 else num_heads


def build_tiny_model(
    texts: list[str],
    out_dir: str | Path,
    *,
    vocab_size: int = 1024,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    max_position_embeddings: int = 4096,
    seed: int = 0,
) -> Path:
    """Train a tokenizer on `texts`, build a random tiny Qwen2ForCausalLM from a Qwen2Config and
    save both to `out_dir`. Returns `out_dir` (as a Path), loadable with
    `AutoModelForCausalLM.from_pretrained(out_dir)` and `AutoTokenizer.from_pretrained(out_dir)`.

    Deterministic for the same texts, sizes and seed. The markers are NOT added here: fine-tuning
    adds them (`nep.train.sft.add_markers`), as it does for any base model.
    """
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    if not texts:
        raise ValueError("build_tiny_model needs at least one training text for its tokenizer")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(texts, vocab_size=vocab_size)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=kv_heads(num_heads),
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    log.warning(SMOKE_WARNING)
    return out_dir
