"""Single-stream runtime: stream reader -> .mpta pipeline -> actions -> events."""
