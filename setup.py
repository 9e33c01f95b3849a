"""The compiled record walk of the capture reader, outer header decode and copy matching loops,
built where a C compiler is at hand (detector/_columns.h holds what they share).

``optional=True``: without a compiler (or Python headers) the build of an extension fails,
setuptools says so, and the package installs with the Python/numpy forms it falls back to.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "detector.capture._walk",
            sources=["detector/capture/_walk.c"],
            depends=["detector/_columns.h"],
            # No fused multiply-add: the compiled walk's timestamps must be the Python walk's bits.
            extra_compile_args=["-O2", "-ffp-contract=off"],
            optional=True,
        ),
        Extension(
            "detector.decode._outer",
            sources=["detector/decode/_outer.c"],
            depends=["detector/_columns.h"],
            extra_compile_args=["-O2", "-ffp-contract=off"],
            optional=True,
        ),
        Extension(
            "detector.flows._copies",
            sources=["detector/flows/_copies.c"],
            depends=["detector/_columns.h"],
            extra_compile_args=["-O2", "-ffp-contract=off"],
            optional=True,
        ),
    ]
)
