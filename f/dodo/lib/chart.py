"""A tiny PNG bar chart, pure Python (zlib + struct): no plotting library to install
on every Windmill worker for one daily image.

`bar_chart(rows)` draws one strip of daily bars per series (a currency), each scaled to
its own maximum, labelled with a built-in 3x5 pixel font.
"""

from __future__ import annotations

import struct
import zlib
from decimal import Decimal

RGB = tuple[int, int, int]
WHITE, INK, GRID, BAR = (255, 255, 255), (40, 40, 40), (225, 225, 225), (46, 111, 191)

# 3x5 glyphs, one string of 15 bits per character (rows top to bottom).
_FONT = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111",
    "3": "111001111001111", "4": "101101111001001", "5": "111100111001111",
    "6": "111100111101111", "7": "111001001001001", "8": "111101111101111",
    "9": "111101111001111", ".": "000000000000010", "-": "000000111000000",
    ":": "000010000010000", " ": "000000000000000", "/": "001001010100100",
    "A": "010101111101101", "B": "110101110101110", "C": "111100100100111",
    "D": "110101101101110", "E": "111100110100111", "F": "111100110100100",
    "G": "111100101101111", "H": "101101111101101", "I": "111010010010111",
    "J": "001001001101111", "K": "101101110101101", "L": "100100100100111",
    "M": "101111111101101", "N": "110101101101101", "O": "111101101101111",
    "P": "111101111100100", "Q": "111101101111001", "R": "110101110101101",
    "S": "111100111001111", "T": "111010010010010", "U": "101101101101111",
    "V": "101101101101010", "W": "101101111111101", "X": "101101010101101",
    "Y": "101101010010010", "Z": "111001010100111",
}


class Canvas:
    """An RGB pixel buffer that can draw rectangles and text, then encode as PNG."""

    def __init__(self, width: int, height: int, background: RGB = WHITE):
        self.width, self.height = width, height
        self.pixels = bytearray(bytes(background) * (width * height))

    def rect(self, x: int, y: int, w: int, h: int, color: RGB) -> None:
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + w, self.width), min(y + h, self.height)
        if x1 <= x0 or y1 <= y0:
            return
        line = bytes(color) * (x1 - x0)
        for row in range(y0, y1):
            start = (row * self.width + x0) * 3
            self.pixels[start : start + len(line)] = line

    def text(self, x: int, y: int, text: str, color: RGB = INK, scale: int = 2) -> None:
        for i, ch in enumerate(text.upper()):
            bits = _FONT.get(ch, _FONT[" "])
            for n, bit in enumerate(bits):
                if bit == "1":
                    self.rect(x + (i * 4 + n % 3) * scale, y + (n // 3) * scale, scale, scale, color)

    def png(self) -> bytes:
        raw = b"".join(
            b"\x00" + bytes(self.pixels[r * self.width * 3 : (r + 1) * self.width * 3])
            for r in range(self.height)
        )
        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b"")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bar_chart(
    series: dict[str, list[Decimal]], first_label: str, last_label: str, title: str = ""
) -> bytes:
    """PNG of one bar strip per series; every list has one value per day, oldest first.

    Each strip is scaled to its own maximum (currencies are never added together) and
    labelled with its name and that maximum.
    """
    days = max((len(v) for v in series.values()), default=0) or 1
    bar_w, gap, left, strip_h, pad = 14, 4, 16, 90, 30
    width = left * 2 + days * (bar_w + gap)
    height = pad + max(len(series), 1) * (strip_h + pad) + 20
    c = Canvas(max(width, 320), height)
    c.text(left, 8, title)
    for i, (name, values) in enumerate(sorted(series.items())):
        top = pad + i * (strip_h + pad)
        peak = max(values, default=Decimal(0))
        c.text(left, top, f"{name} MAX {peak:f}")
        base = top + 14 + strip_h - 14
        c.rect(left, base, days * (bar_w + gap), 1, GRID)
        for d, value in enumerate(values):
            if peak > 0 and value > 0:
                h = max(1, int((value / peak) * (strip_h - 16)))
                c.rect(left + d * (bar_w + gap), base - h, bar_w, h, BAR)
    c.text(left, height - 16, first_label)
    c.text(max(left, width - left - len(last_label) * 8), height - 16, last_label)
    return c.png()
