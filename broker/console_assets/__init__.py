"""The console page, its script and its style sheet (package data: ``broker.console`` serves them)."""
