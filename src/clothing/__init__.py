"""clothing-classifier: a TF Serving-compatible model server and an image gateway."""

__version__ = "0.1.0"
