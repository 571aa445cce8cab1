"""Training our own models: ``pretrain`` (the compact convnet on a tagged manifest) and
``corpus`` (the offline synthetic-music corpus it is trained on)."""
