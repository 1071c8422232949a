"""`python -m dermjax.eval ...` is `dermjax-eval ...`."""
from dermjax.cli.evaluate import main

main()
