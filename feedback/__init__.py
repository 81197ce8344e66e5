"""Thumbs-up/down feedback: store, export to training sets, retraining."""
