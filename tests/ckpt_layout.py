#!/usr/bin/env python3
"""ckpt_layout: checks a dssgd checkpoint's layout with h5py, independently of
the C reader (tests/test_checkpoint.c runs it).

Usage: ckpt_layout.py FILE N_PARAMS N_PARTICIPANTS [SERVER_PARAMS_0]
SERVER_PARAMS_0, when given, is a C99 hex float ("%a") that /server/params[0]
must equal bit for bit as a float32. Prints OK and exits 0 when all holds;
otherwise prints each problem and exits 1.
"""
import sys

import h5py
import numpy as np

RNG_STATE_WORDS = 4


def text(value):
    """An attribute string as str, whether h5py gives bytes or str."""
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8")
    if isinstance(value, str):
        return value
    raise TypeError(f"not a string: {value!r}")


def main(argv):
    if len(argv) not in (4, 5):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    path, n, parts = argv[1], int(argv[2]), int(argv[3])
    problems = []
    with h5py.File(path, "r") as f:
        attrs = f.attrs
        for name in ("format", "version", "epoch", "seed", "config", "model"):
            if name not in attrs:
                problems.append(f"attribute {name} missing")
        if problems:
            print("\n".join(problems))
            return 1
        if text(attrs["format"]) != "dssgd-checkpoint":
            problems.append(f"format is {text(attrs['format'])!r}")
        if int(attrs["version"]) != 1:
            problems.append(f"version is {attrs['version']!r}")
        for name in ("epoch", "seed"):
            if not np.issubdtype(np.asarray(attrs[name]).dtype, np.integer):
                problems.append(f"attribute {name} is not an integer")
        for name in ("config", "model"):
            text(attrs[name])

        expected = {
            "server/params": ((n,), np.float32),
            "server/stat": ((n,), np.float64),
            "server/rng": ((2, RNG_STATE_WORDS), np.uint64),
            "server/counters": ((2,), np.uint64),
            "participants/params": ((parts, n), np.float32),
            "participants/rng": ((parts, RNG_STATE_WORDS), np.uint64),
            "participants/epsilon": ((parts,), np.float64),
        }
        # The optional datasets: checked when present.
        if "server/momentum" in f:
            expected["server/momentum"] = ((n,), np.float32)
        if "participants/residual" in f:
            expected["participants/residual"] = ((parts, n), np.float32)
        for name, (shape, dtype) in expected.items():
            if name not in f:
                problems.append(f"/{name} missing")
                continue
            d = f[name]
            if d.shape != shape:
                problems.append(f"/{name} has shape {d.shape}, expected {shape}")
            if d.dtype != np.dtype(dtype):
                problems.append(f"/{name} has dtype {d.dtype}, expected {np.dtype(dtype)}")
            if not d.fletcher32:
                problems.append(f"/{name} has no Fletcher32 checksum")
            d[...]  # the whole dataset reads (checksums verified)

        if len(argv) == 5 and "server/params" in f:
            want = np.float32(float.fromhex(argv[4]))
            got = f["server/params"][0]
            if want.tobytes() != got.tobytes():
                problems.append(f"/server/params[0] is {got!r}, expected {want!r}")

    if problems:
        print("\n".join(problems))
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
