"""ragtune: keep a language model current (live RAG index) and specialised (LoRA retraining)."""

__version__ = "0.1.0"
