"""Pieces shared by camera_pod, broker and operator: logging, redaction, error vocabulary."""
