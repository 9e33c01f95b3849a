"""The compiled record walk of the capture reader, outer header decode, copy matching loops and
flow table accounting, built where a C compiler is at hand (detector/_columns.h holds what they
share).

``optional=True``: without a compiler (or Python headers) the build of an extension fails,
setuptools says so, and the package installs with the Python/numpy forms it falls back to.
"""

from setuptools import Extension, setup


def compiled(module: str) -> Extension:
    """The optional extension ``detector.<module>``, from ``detector/<module>.c``."""
    path = "detector/" + module.replace(".", "/")
    return Extension(
        "detector." + module,
        sources=[path + ".c"],
        depends=["detector/_columns.h"],
        # No fused multiply-add: the compiled forms' floating-point results (the walk's
        # timestamps) must be the Python forms' bits.
        extra_compile_args=["-O2", "-ffp-contract=off"],
        optional=True,
    )


MODULES = ("capture._walk", "decode._outer", "flows._copies", "flows._table")

setup(ext_modules=[compiled(m) for m in MODULES])
