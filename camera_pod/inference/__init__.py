"""One inference interface for every backend (Ultralytics now; ONNX Runtime in the speed work)."""
