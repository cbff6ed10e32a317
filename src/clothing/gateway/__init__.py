"""The HTTP gateway: fetch or receive an image, preprocess it, ask the model server.

The pipeline is ``fetch -> decode/preprocess -> Predict over gRPC -> label``.
:mod:`clothing.gateway.service` holds it without any HTTP types;
:mod:`clothing.gateway.app` is the thin FastAPI layer on top. Importing the
package stays light: no ONNX Runtime, torch or TensorFlow anywhere in it.
"""
