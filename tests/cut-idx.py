"""Writes the first TRAIN training and TEST test examples of an IDX data set
(gzipped, as Debian's dataset-fashion-mnist ships it) as plain IDX files in
DST: a small, real data set for the tests. The header's count is rewritten;
nothing else changes.
Usage: python3 tests/cut-idx.py SRC DST TRAIN TEST"""
import gzip
import struct
import sys

src, dst, counts = sys.argv[1], sys.argv[2], {"train": int(sys.argv[3]), "t10k": int(sys.argv[4])}
for prefix, count in counts.items():
    for kind, header in (("images-idx3-ubyte", 16), ("labels-idx1-ubyte", 8)):
        with gzip.open(f"{src}/{prefix}-{kind}.gz") as f:
            head = bytearray(f.read(header))
            size = 784 if kind.startswith("images") else 1
            body = f.read(count * size)
        head[4:8] = struct.pack(">I", count)
        with open(f"{dst}/{prefix}-{kind}", "wb") as out:
            out.write(head + body)
