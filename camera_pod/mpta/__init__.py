""".mpta archives: schema of pipeline.json, safe fetching/extraction, validation, packing."""
