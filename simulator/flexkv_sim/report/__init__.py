"""HTML dashboards of replay results: one run's report and a comparison of several.

The pages are self-contained (plotly.js inlined once, no fonts or scripts fetched) and
are built from result files alone (``summary.json``, ``requests.parquet``/``.csv``,
``utilisation.csv``, ``config.json``): this package never imports the engine or the
twin's replay code.
"""

from .compare import write_comparison
from .load import RunData, load_run
from .single import write_report

__all__ = ["RunData", "load_run", "write_comparison", "write_report"]
