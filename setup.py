"""Build hook for the native data-path extension (see ipsecd/datapath/native/)."""

from setuptools import Extension, setup

ext_modules: list[Extension] = [
    # The native ESP/AH data path on OpenSSL libcrypto (docs/datapath.md, "Native path"). When it
    # cannot be built or imported, ipsecd.datapath.native.AVAILABLE is False and the pure-Python
    # fallback is used.
    Extension(
        "ipsecd.datapath._native",
        sources=[
            "ipsecd/datapath/native/module.c",
            "ipsecd/datapath/native/sa.c",
            "ipsecd/datapath/native/crypto.c",
            "ipsecd/datapath/native/ah.c",
            "ipsecd/datapath/native/ip.c",
            "ipsecd/datapath/native/replay.c",
            "ipsecd/datapath/native/rsa.c",
            "ipsecd/datapath/native/pyconv.c",
        ],
        depends=[
            "ipsecd/datapath/native/ipsec_native.h",
            "ipsecd/datapath/native/sa.h",
            "ipsecd/datapath/native/rsa.h",
            "ipsecd/datapath/native/pyconv.h",
        ],
        libraries=["crypto"],
        extra_compile_args=["-O2", "-Wall", "-Wextra", "-std=c99", "-fno-strict-aliasing"],
        # A compiler that cannot build it must not fail the install: the Python path takes over.
        optional=True,
    ),
    # The threaded fast path (docs/datapath.md, "Fast path"): TUN <-> ESP-in-UDP in C threads,
    # reusing the per-SA code above. Optional as well: without it the daemon's Python router runs.
    Extension(
        "ipsecd.datapath._fastpath",
        sources=[
            "ipsecd/datapath/native/fastpath.c",
            "ipsecd/datapath/native/fp_tables.c",
            "ipsecd/datapath/native/fp_loop.c",
            "ipsecd/datapath/native/fp_rx.c",
            "ipsecd/datapath/native/sa.c",
            "ipsecd/datapath/native/crypto.c",
            "ipsecd/datapath/native/ah.c",
            "ipsecd/datapath/native/ip.c",
            "ipsecd/datapath/native/replay.c",
            "ipsecd/datapath/native/pyconv.c",
        ],
        depends=[
            "ipsecd/datapath/native/ipsec_native.h",
            "ipsecd/datapath/native/sa.h",
            "ipsecd/datapath/native/fastpath.h",
            "ipsecd/datapath/native/pyconv.h",
        ],
        libraries=["crypto"],
        extra_compile_args=["-O2", "-Wall", "-Wextra", "-std=c99", "-fno-strict-aliasing", "-pthread"],
        extra_link_args=["-pthread"],
        optional=True,
    ),
]

setup(ext_modules=ext_modules)
