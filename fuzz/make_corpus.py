"""Write seed inputs for the fuzzers: small valid images and tensors, and the bombs.

python fuzz/make_corpus.py            # fills fuzz/corpus/{images,tensors}
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clothing import tensors  # noqa: E402
from tests.hardening import bombs  # noqa: E402


def main() -> None:
    images = ROOT / "fuzz" / "corpus" / "images"
    tensor_dir = ROOT / "fuzz" / "corpus" / "tensors"
    images.mkdir(parents=True, exist_ok=True)
    tensor_dir.mkdir(parents=True, exist_ok=True)
    picture = Image.new("RGB", (24, 16), (200, 40, 90))
    for fmt in ("PNG", "JPEG", "WEBP", "GIF"):
        buffer = io.BytesIO()
        picture.save(buffer, fmt)
        (images / f"small.{fmt.lower()}").write_bytes(buffer.getvalue())
    for kind, maker in bombs.BOMBS.items():
        (images / f"bomb.{kind}").write_bytes(maker())
    batch = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    (tensor_dir / "content").write_bytes(tensors.from_numpy(batch).SerializeToString())
    typed = tensors.from_numpy(batch, use_tensor_content=False)
    (tensor_dir / "typed").write_bytes(typed.SerializeToString())
    floats = tensors.from_numpy(np.linspace(0, 1, 10, dtype=np.float32).reshape(1, 10))
    (tensor_dir / "floats").write_bytes(floats.SerializeToString())


if __name__ == "__main__":
    main()
