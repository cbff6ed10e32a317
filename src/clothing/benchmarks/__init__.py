"""Benchmarks for ``clothing bench``: load generation, the systems it starts, reports.

Two levels are measured in one run on the same model:

1. tensor in, probabilities out: in-process ONNX Runtime (the ceiling) against the
   model server over gRPC, batching off and on;
2. photo in, class JSON out: gateway + model server against the baseline app
   (``bench/baseline_app.py``) and a LitServe app (``bench/litserve_app.py``).

Everything here imports lightly; ONNX Runtime, httpx and matplotlib load inside the
functions that need them.
"""
