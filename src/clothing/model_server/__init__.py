"""The model server: TF Serving's gRPC and REST APIs on ONNX Runtime."""
