"""Parsing config text: JSON as operators write it, YAML, and ``--set`` values.

PyYAML is imported only when YAML is actually parsed, so loading a JSON config needs
nothing beyond the standard library.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import ConfigError


def strip_json_comments(text: str) -> str:
    """Blank out ``//`` and ``/* */`` comments and drop trailing commas, outside strings.

    Comment characters become spaces and newlines are kept, so the JSON parser's line
    and column numbers still point into the original text. ``//`` inside a string (as in
    ``"redis://host"``) is left alone.
    """
    out: list[str] = []
    i, n = 0, len(text)
    in_string = False
    pending_comma = -1  # index in `out` of a comma that may turn out to be trailing
    while i < n:
        c = text[i]
        if in_string:
            out.append(c)
            if c == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 1
            elif c == '"':
                in_string = False
            i += 1
            continue
        if text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end == -1 else end
            out.append(" " * (end - i))
            i = end
            continue
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end == -1 else end + 2  # an unclosed comment runs to the end
            out.extend(ch if ch == "\n" else " " for ch in text[i:end])
            i = end
            continue
        if c in "}]" and pending_comma >= 0:
            out[pending_comma] = " "
        if not c.isspace():
            pending_comma = len(out) if c == "," else -1
        if c == '"':
            in_string = True
        out.append(c)
        i += 1
    return "".join(out)


def _unique_pairs(source: str) -> Any:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise ConfigError(f"duplicate key {key!r}", source=source)
            result[key] = value
        return result

    return hook


def parse_json(text: str, source: str) -> Any:
    """Parse JSON with comments and trailing commas; duplicate keys are an error."""
    try:
        return json.loads(strip_json_comments(text), object_pairs_hook=_unique_pairs(source))
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}", source=source
        ) from None


def _require_yaml() -> None:
    try:
        import yaml  # noqa: F401
    except ImportError:
        raise ConfigError("reading YAML needs PyYAML (pip install pyyaml)") from None


def _unique_key_loader() -> type:
    """A SafeLoader that refuses a key given twice in one mapping."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def construct_mapping(loader: Any, node: Any, deep: bool = False) -> dict[Any, Any]:
        loader.flatten_mapping(node)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in result:
                line = key_node.start_mark.line + 1
                raise ConfigError(f"duplicate key {key!r} at line {line}")
            result[key] = loader.construct_object(value_node, deep=deep)
        return result

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return Loader


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML safely; duplicate keys are an error."""
    _require_yaml()
    import yaml

    try:
        return yaml.load(text, Loader=_unique_key_loader())  # a SafeLoader subclass
    except ConfigError as exc:
        raise exc.with_source(source) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"invalid YAML{where}: {problem}", source=source) from None


def parse_yaml_value(text: str, item: str) -> Any:
    """Read the value of a ``--set`` item as a YAML scalar or flow collection.

    Unquoted numbers that YAML 1.1 leaves as strings (``1e6``) are read as numbers;
    quote a value to keep it a string.
    """
    _require_yaml()
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ConfigError(f"cannot parse the value of {item!r}", source="--set") from None
    if isinstance(value, str) and value == text.strip():  # unquoted
        try:
            number = json.loads(value)
        except ValueError:
            return value
        if isinstance(number, (int, float)) and not isinstance(number, bool):
            return number
    return value
