"""Pixel data for the image task, without an imaging library: an RGB gradient, greyscale, a box
thumbnail, written as a binary PGM (P5) file that image viewers open."""

from __future__ import annotations

from pathlib import Path

__all__ = ["gradient", "grayscale", "thumbnail", "write_pgm"]


def gradient(width: int, height: int) -> bytes:
    """RGB bytes: red grows left to right, green top to bottom, blue constant."""
    if width < 1 or height < 1:
        raise ValueError(f"an image needs a positive size, got {width}x{height}")
    return bytes(
        channel
        for y in range(height)
        for x in range(width)
        for channel in (x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), 64)
    )


def grayscale(rgb: bytes, width: int, height: int) -> bytes:
    """ITU-R 601 luma of each pixel."""
    return bytes((299 * rgb[i] + 587 * rgb[i + 1] + 114 * rgb[i + 2]) // 1000 for i in range(0, width * height * 3, 3))


def thumbnail(grey: bytes, width: int, height: int, factor: int) -> tuple[bytes, int, int]:
    """Each ``factor`` x ``factor`` box averaged into one pixel."""
    w, h = width // factor, height // factor
    if w < 1 or h < 1:
        raise ValueError(f"factor {factor} leaves nothing of a {width}x{height} image")
    out = bytearray()
    for by in range(h):
        for bx in range(w):
            box = [grey[(by * factor + dy) * width + bx * factor + dx] for dy in range(factor) for dx in range(factor)]
            out.append(sum(box) // len(box))
    return bytes(out), w, h


def write_pgm(path: Path, grey: bytes, width: int, height: int) -> None:
    path.write_bytes(b"P5\n%d %d\n255\n" % (width, height) + grey)
