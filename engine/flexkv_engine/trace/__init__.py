"""Trace I/O: our versioned JSON-lines schema, importers of public formats, a writer.

Standard library only: the simulator imports this package and must not need torch or
numpy. The schema is described in ``traces/FORMAT.md``.
"""

from .convert import convert
from .errors import TraceError
from .fields import MAX_TOKENS_PER_BLOCK
from .importers import IMPORTERS, Importer
from .importers.azure import import_azure
from .importers.mooncake import write_mooncake
from .importers.prefix_models import MODELS as PREFIX_MODELS
from .locations import public_traces_dir
from .reader import Trace, detect_format, load_requests, read_trace
from .records import (
    FORMAT_NAME,
    SCHEMA_VERSION,
    OutcomeRecord,
    Record,
    RequestRecord,
    TraceHeader,
    TransferRecord,
)
from .writer import TraceWriter

__all__ = [
    "FORMAT_NAME",
    "IMPORTERS",
    "MAX_TOKENS_PER_BLOCK",
    "PREFIX_MODELS",
    "SCHEMA_VERSION",
    "Importer",
    "OutcomeRecord",
    "Record",
    "RequestRecord",
    "Trace",
    "TraceError",
    "TraceHeader",
    "TraceWriter",
    "TransferRecord",
    "convert",
    "detect_format",
    "import_azure",
    "load_requests",
    "public_traces_dir",
    "read_trace",
    "write_mooncake",
]
