"""The bottom floor: what every other module stands on. ``profiles`` (every number that
makes ``quick`` and ``full`` differ), ``runtime`` (device, profile, seeds), ``_validate``
(input checks with messages that name the argument), ``ops`` (small tensor helpers),
``cache`` (atomic, locked, safetensors) and ``recipes`` (what a cached artefact is made
from, and its key)."""
