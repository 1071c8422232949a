"""Builds the one C extension (dermjax/data/_resample.c) and maps the source tree's configs/ to
the installed package dermjax.configs, so `--config NAME` works from a wheel; everything else is
in pyproject.toml."""
from setuptools import Extension, find_packages, setup

setup(packages=find_packages(include=["dermjax", "dermjax.*"]) + ["dermjax.configs"],
      package_dir={"dermjax.configs": "configs"},
      ext_modules=[Extension("dermjax.data._resample", ["dermjax/data/_resample.c"],
                             depends=["dermjax/data/_resample_kernel.h"],
                             extra_compile_args=["-O3", "-fno-math-errno"])])
