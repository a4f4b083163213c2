"""Declared contract between the broker and camera pods (the only thing both sides import)."""
