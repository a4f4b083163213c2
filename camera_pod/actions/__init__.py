"""ActionSink implementations: real Redis and PostgreSQL connections made once per archive."""
