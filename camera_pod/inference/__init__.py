"""One inference interface (``models.Model``) for every backend: ONNX Runtime (the default) and Ultralytics."""
