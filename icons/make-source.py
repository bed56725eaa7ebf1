"""Writes icons/source.png: the 1024x1024 source of the app icons (a warm gradient with an
open-book circle). Standard library only. Regenerate the icon set with:
    python3 icons/make-source.py && npx tauri icon icons/source.png -o icons && rm -rf icons/android icons/ios
"""
import math
import struct
import zlib
from pathlib import Path

SIZE = 1024


def pixel(x: int, y: int) -> tuple[int, int, int, int]:
    cx = cy = SIZE / 2
    dx, dy = x - cx, y - cy
    r = math.hypot(dx, dy)
    # Rounded-square mask with soft edge.
    half, radius = SIZE * 0.46, SIZE * 0.2
    qx, qy = max(abs(dx) - (half - radius), 0), max(abs(dy) - (half - radius), 0)
    edge = math.hypot(qx, qy) - radius
    alpha = max(0.0, min(1.0, 0.5 - edge))
    if alpha == 0:
        return (0, 0, 0, 0)
    # Warm diagonal gradient: amber to deep rose.
    t = (x + y) / (2 * SIZE)
    base = (
        round(247 * (1 - t) + 190 * t),
        round(160 * (1 - t) + 60 * t),
        round(60 * (1 - t) + 90 * t),
    )
    # A cream circle (the "sound" of the book) with a darker ring.
    ring = abs(r - SIZE * 0.30)
    if r < SIZE * 0.26:
        color = (255, 244, 225)
        # Two pages: a vertical spine line.
        if abs(dx) < 6 and abs(dy) < SIZE * 0.16:
            color = (190, 90, 70)
    elif ring < SIZE * 0.018:
        color = (255, 236, 205)
    else:
        color = base
    return (*color, round(255 * alpha))


def write_png(path: Path) -> None:
    rows = bytearray()
    for y in range(SIZE):
        rows.append(0)  # filter: none
        for x in range(SIZE):
            rows.extend(pixel(x, y))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", SIZE, SIZE, 8, 6, 0, 0, 0)
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(rows), 9))
        + chunk(b"IEND", b"")
    )
    path.write_bytes(png)


if __name__ == "__main__":
    write_png(Path(__file__).with_name("source.png"))
