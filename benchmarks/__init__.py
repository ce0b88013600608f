"""``make bench``: collectfast against stock collectstatic and its peers, on one machine, in one run.

Not shipped in the package. Run ``python -m benchmarks.run`` (see docs/benchmarks.rst).
"""

from __future__ import annotations
