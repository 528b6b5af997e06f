"""HTML dashboards of replay results: one run's report and a comparison of several.

A page needs nothing from the network: its CSS is inline and it loads plotly.js from
``plotly.min.js``, which is written once into the page's folder (:mod:`.html`), so the
folder, copied whole, opens offline. Pages are built from result files alone
(``summary.json``, ``requests.parquet``/``.csv``, ``utilisation.csv``,
``capacity_curve.csv``, ``config.json``): this package never imports the engine or the
twin's replay code.
"""

from .compare import write_comparison
from .load import RunData, load_run
from .single import write_report

__all__ = ["RunData", "load_run", "write_comparison", "write_report"]
