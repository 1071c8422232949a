"""The bottom layer: what every other package may import (mesh and sharding rules)."""
