"""Ahead-of-time compiles for accelerator targets on a CPU host (dermjax-compile)."""
