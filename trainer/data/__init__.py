"""Data for the trainer: tokenizer, corpora, prepared token files, batch sampling."""
