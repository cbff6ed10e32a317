"""Request bodies that cost the gateway more than they cost the sender: builders shared by
the tests here and the container runs."""

from __future__ import annotations

from collections.abc import Iterator

CHUNK = 1 << 20


def huge_image_b64_json(total_bytes: int) -> Iterator[bytes]:
    """``{"image_b64": "AAAA..."}`` of ``total_bytes``, streamed in 1 MiB chunks (no
    Content-Length: the server learns the size only by reading)."""
    yield b'{"image_b64": "'
    left = total_bytes - 20
    while left > 0:
        size = min(CHUNK, left)
        yield b"A" * size
        left -= size
    yield b'"}'


def huge_multipart(total_bytes: int, boundary: str = "hostileboundary") -> Iterator[bytes]:
    """A multipart upload whose one ``file`` is ``total_bytes`` long, streamed."""
    yield (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    left = total_bytes
    while left > 0:
        size = min(CHUNK, left)
        yield b"\x00" * size
        left -= size
    yield f"\r\n--{boundary}--\r\n".encode()


def many_urls_body(total_bytes: int) -> bytes:
    """``{"urls": ["a", "a", ...]}``: each 4 bytes becomes a Python string once parsed."""
    count = max(1, (total_bytes - 12) // 4)
    return b'{"urls": [' + b'"a",' * (count - 1) + b'"a"]}'


def long_url_body(length: int) -> bytes:
    return b'{"urls": ["https://example.com/' + b"a" * length + b'"]}'
