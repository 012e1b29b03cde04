#!/usr/bin/env python3
"""Writes crates/machi/src/migration/sjis2004.bin: the double-byte part of
Shift_JIS-2004 (JIS X 0213:2004) as a table for machi's decoder.

Each entry is 8 bytes: lead byte, trail byte, then one or two Unicode
scalar values as 3-byte big-endian numbers (the second 0 when the code maps
to one character). Entries are sorted by (lead, trail). The mapping is the
one Python's `shift_jis_2004` codec implements.
"""
import pathlib

LEADS = list(range(0x81, 0xA0)) + list(range(0xE0, 0xFD))
TRAILS = list(range(0x40, 0x7F)) + list(range(0x80, 0xFD))

out = bytearray()
for lead in LEADS:
    for trail in TRAILS:
        try:
            s = bytes([lead, trail]).decode("shift_jis_2004")
        except UnicodeDecodeError:
            continue
        cps = [ord(c) for c in s] + [0]
        out += bytes([lead, trail])
        for cp in cps[:2]:
            out += cp.to_bytes(3, "big")

path = pathlib.Path(__file__).resolve().parent.parent / "crates/machi/src/migration/sjis2004.bin"
path.write_bytes(out)
print(f"{len(out) // 8} entries, {len(out)} bytes -> {path}")
