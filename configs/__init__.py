"""The shipped experiment configs: each file's docstring has its command. Installed with the
package as `dermjax.configs` (setup.py maps this folder there), so `--config NAME` finds them
from any directory; copy one next to your data to make your own and pass its path."""
