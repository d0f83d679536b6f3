"""Frozen encoders: the text encoder (question and answer-prompt embeddings) and image encoders (image features)."""
