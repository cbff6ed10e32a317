"""Where the bundled model's copies live: one model repository per precision.

Every copy is served under the same model name (``clothing-model``) with the same
version number as the float32 original it was made from, so the gateway, the
benchmark and TF Serving clients address them alike; which copy a model server
loads is only its ``--model_base_path``. CPUs serve the int8 copy, GPUs the
float32 original or its float16 copy.
"""

from __future__ import annotations

PRECISION_BASE_PATHS = {
    "float32": "models/clothing-model",
    "int8": "models/clothing-model-int8",  # clothing quantize
    "float16": "models/clothing-model-fp16",  # clothing fp16 (not bundled)
}
CPU_PRECISION = "int8"
