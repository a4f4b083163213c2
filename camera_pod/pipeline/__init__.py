"""The pipeline engine: runs an .mpta node tree on one frame; all I/O goes through an ActionSink."""
