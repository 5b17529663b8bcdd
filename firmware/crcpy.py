"""CRC32 (the zlib one) in plain Python, for ports built without binascii.crc32:
ckpt.py imports it only there (firmware/README.md, "Memory": code in memory costs heap).
"""

_NIBBLE = []
for i in range(16):
    c = i
    for _ in range(4):
        c = (c >> 1) ^ (0xEDB88320 if c & 1 else 0)
    _NIBBLE.append(c)


def crc32(data, crc=0):
    """binascii.crc32(data, crc), with a 16-entry table."""
    t = _NIBBLE
    crc ^= 0xFFFFFFFF
    for b in bytes(data):
        crc = (crc >> 4) ^ t[(crc ^ b) & 15]
        crc = (crc >> 4) ^ t[(crc ^ (b >> 4)) & 15]
    return crc ^ 0xFFFFFFFF
