"""What differs between the Python versions the contract is read on: the collector supports 3.10 to 3.13, the
server runs on 3.11."""

from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

__all__ = ["tomllib"]
