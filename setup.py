"""Builds the one C extension (dermjax/data/_resample.c); everything else is in pyproject.toml."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("dermjax.data._resample", ["dermjax/data/_resample.c"],
                             depends=["dermjax/data/_resample_kernel.h"],
                             extra_compile_args=["-O3", "-fno-math-errno"])])
