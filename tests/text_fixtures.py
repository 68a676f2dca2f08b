"""Tiny IMDB-shaped fixtures built offline: a parquet folder in the hub's schema and a local
model folder (a randomly initialized DistilBERT with a WordPiece tokenizer trained here)."""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd

POSITIVE = "great wonderful superb moving brilliant charming delightful".split()
NEGATIVE = "awful boring dreadful dull terrible clumsy tedious".split()
FILLER = "the film movie plot actor scene story was and a with it this of".split()


def review(rng: random.Random, label: int) -> str:
    words = [rng.choice(FILLER) for _ in range(rng.randint(4, 40))]
    for _ in range(rng.randint(1, 4)):
        words.insert(rng.randrange(len(words) + 1), rng.choice(POSITIVE if label else NEGATIVE))
    return " ".join(words)


def write_imdb_folder(folder: Path, n_train: int = 80, n_test: int = 40, seed: int = 0) -> Path:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        labels = [i % 2 for i in range(n)]
        pd.DataFrame({"text": [review(rng, y) for y in labels], "label": labels}).to_parquet(folder / f"{split}.parquet")
    return folder


def write_tiny_model(folder: Path, max_position_embeddings: int = 128) -> Path:
    """A 2-layer, 32-wide DistilBERT and its tokenizer, saved as a Hugging Face model folder."""
    from tokenizers import (
        Tokenizer,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import (
        DistilBertConfig,
        DistilBertForSequenceClassification,
        PreTrainedTokenizerFast,
    )

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # save_pretrained's "Writing model shards" bar is not the test's output
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator([" ".join(POSITIVE + NEGATIVE + FILLER)] * 4,
                                  trainers.WordPieceTrainer(vocab_size=200, special_tokens=specials))
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                   model_max_length=max_position_embeddings)
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(folder)
    config = DistilBertConfig(vocab_size=tokenizer.get_vocab_size(), dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                              max_position_embeddings=max_position_embeddings, num_labels=2,
                              pad_token_id=tokenizer.token_to_id("[PAD]"))
    DistilBertForSequenceClassification(config).save_pretrained(folder)
    return folder
