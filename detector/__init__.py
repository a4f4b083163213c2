"""Camera detection worker: composition root (CLI) and the small kit shared by all parts."""
