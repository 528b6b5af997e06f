"""The configuration as plain data: for results files, comparisons and provenance."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from . import schema
from .model import Config


def config_to_dict(config: Config, *, redact: bool = True) -> dict[str, Any]:
    """The configuration's values in nested form, ready for JSON.

    Pass a resolved config to get the values in effect; open values appear as ``null``.
    ``remote_password`` is replaced by ``"<redacted>"`` unless ``redact`` is false, so
    the result can be written beside run results.
    """
    cache = {name: getattr(config.cache_config, name) for name in schema.CACHE.fields}
    cache["ssd_cache_dir"] = list(cache["ssd_cache_dir"])
    if redact and cache["remote_password"] is not None:
        cache["remote_password"] = "<redacted>"
    serving = {
        name: getattr(config.serving_config, name)
        for name in schema.SERVING.fields
        if name != "compute"
    }
    serving["compute"] = {
        name: getattr(config.serving_config.compute, name) for name in schema.COMPUTE.fields
    }
    model = {name: getattr(config.model_config, name) for name in schema.MODEL.fields}
    return {"cache_config": cache, "model_config": model, "serving_config": serving}


def config_hash(config: Config) -> str:
    """First 16 hex digits of the sha256 of the canonical JSON of :func:`config_to_dict`.

    Equal configs hash equally whatever their source; the remote password counts only as
    set or not set.
    """
    text = json.dumps(config_to_dict(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
