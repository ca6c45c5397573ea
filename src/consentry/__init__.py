"""consentry: find, trace and help take down models that reproduce people without consent.

The library API is what the CLI (and later the HTTP API) call; see the README for the map.
"""

__version__ = "0.1.0"
