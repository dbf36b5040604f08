"""Integrations with vector databases, one module per database, each behind a pip extra.

- :mod:`maxsim.integrations.qdrant`: ``pip install 'maxsim[qdrant]'``.

Nothing here imports a database client until it is used.
"""

from __future__ import annotations
