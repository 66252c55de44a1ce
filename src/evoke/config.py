"""Load and validate the workflow configuration (``config.yaml``).

One validator for the Snakefile and the CLI: :func:`validate_config` checks a
config dict against the schema (``config.schema.yaml``, shipped inside the
package and linked from ``workflow/schemas/``) and fills in the schema's
defaults, so both see the same settings.

The workflow's configuration comes in layers, later ones winning key by key
(nested mappings are merged, as Snakemake merges them): the Snakefile's
``config.yaml``, each ``--configfile FILE`` in order, then ``--config
key=value``. :func:`validate_layers` merges them itself so that an error names
the layer a bad value came from. Snakemake reads ``--config`` values untyped
(``frames='{rate_hz: 0.5}'`` arrives as ``{"rate_hz": "0.5"}``, ``null`` as the
string ``"null"``): :func:`coerce` types them the way YAML would, where the
schema accepts that type at the key's place.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from evoke import EvokeError

SCHEMA_PATH = Path(str(resources.files("evoke") / "schemas" / "config.schema.yaml"))

NO_MANIFEST = (
    "no manifest given. For your own videos write a CSV with columns video_id, source, split "
    "(README, 'Your own videos') and run: snakemake --cores 2 --config dataset=NAME "
    "manifest=FILE; for the demo run: bash scripts/demo.sh"
)


class ConfigError(EvokeError):
    """The configuration does not satisfy the schema."""


def load_schema() -> dict:
    with open(SCHEMA_PATH, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _validator_with_defaults():
    base = jsonschema.Draft7Validator
    validate_properties = base.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(base, {"properties": set_defaults})


# --- layers ------------------------------------------------------------------


def merge(base: dict, over: Mapping) -> dict:
    """``over`` merged into a copy of ``base``: mappings key by key, anything else replaced
    (Snakemake's ``update_config``)."""
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _has(data: Any, path: tuple) -> bool:
    for key in path:
        if not isinstance(data, Mapping) or key not in data:
            return False
        data = data[key]
    return True


def source_of(path: tuple, layers: list[tuple[str, Mapping]]) -> str:
    """The name of the last layer that sets ``path`` (or the nearest key above it)."""
    for n in range(len(path), 0, -1):
        for name, data in reversed(layers):
            if _has(data, path[:n]):
                return name
    return "the schema's defaults" if path else (layers[-1][0] if layers else "config")


# --- coercion of untyped --config values ------------------------------------


def _types(schema: Mapping) -> set[str]:
    t = schema.get("type")
    types = set([t] if isinstance(t, str) else t or [])
    for key in ("anyOf", "oneOf"):
        for sub in schema.get(key, []):
            types |= _types(sub)
    return types


def _matches(value: Any, types: set[str]) -> bool:
    checks = {
        "null": value is None,
        "boolean": isinstance(value, bool),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, (int, float)) and not isinstance(value, bool),
        "string": isinstance(value, str),
        "array": isinstance(value, list),
        "object": isinstance(value, dict),
    }
    return any(checks.get(t, False) for t in types)


def _yaml_scalar(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _child(schema: Mapping, key: str) -> Mapping:
    props = schema.get("properties", {})
    if key in props:
        return props[key]
    extra = schema.get("additionalProperties")
    return extra if isinstance(extra, Mapping) else {}


def coerce(value: Any, schema: Mapping) -> Any:
    """Type an untyped (``--config``) value by the schema at its place.

    A string becomes what YAML reads it as (``0.5`` a number, ``true`` a
    boolean, ``null`` None) where the schema accepts that type there (a whole
    number as a float where the schema says number), or where
    the schema says nothing (free-form blocks such as ``train.lightgbm``);
    ``1e-3`` becomes a number where one is expected; a number given for a
    string-only key becomes its text. Anything else is left as it is, for the
    validator to name.
    """
    types = _types(schema)
    if isinstance(value, Mapping):
        return {k: coerce(v, _child(schema, k)) for k, v in value.items()}
    if isinstance(value, list):
        items = schema.get("items", {})
        return [coerce(v, items if isinstance(items, Mapping) else {}) for v in value]
    if isinstance(value, str):
        if not types:
            return _yaml_scalar(value)
        if "string" in types and not (types - {"string"}):
            return value
        candidates = [_yaml_scalar(value)]
        if types & {"number", "integer"}:
            for parse in (int, float):
                try:
                    candidates.append(parse(value))
                except ValueError:
                    pass
        for c in candidates:
            if not isinstance(c, str) and _matches(c, types):
                if isinstance(c, (list, dict)):
                    return coerce(c, schema)
                if isinstance(c, int) and not isinstance(c, bool) and "number" in types and "integer" not in types:
                    return float(c)  # rate_hz=1 is config.yaml's 1.0 (the same params: no rerun)
                return c
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and types == {"string"}:
        return str(value)
    return value


# --- validation ----------------------------------------------------------------

def _error_paths(error: jsonschema.ValidationError) -> list[tuple]:
    """The key paths an error is about (an unexpected key: that key's own path)."""
    path = tuple(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = set(error.schema.get("properties", {}))
        extra = [k for k in error.instance if k not in known]
        if extra:
            return [path + (k,) for k in extra]
    if error.validator == "required":
        return [path + (k,) for k in error.validator_value if k not in (error.instance or {})]
    return [path]


def _where(path: tuple) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def validate_layers(layers: list[tuple[str, Mapping]], untyped: tuple[str, ...] = ("--config",),
                    require_manifest: bool = True) -> dict:
    """Merge config layers (lowest first) and validate the result with defaults filled in.

    ``layers`` are ``(name, mapping)`` pairs such as ``("config.yaml", {...})``,
    ``("--configfile demo.yaml", {...})``, ``("--config", {...})``; layers whose
    name is in ``untyped`` are first typed by :func:`coerce`. Without a
    ``dataset``, the manifest's file name without its extension names it
    (``my_videos.csv``: ``my_videos``). ``require_manifest=False`` accepts a config
    without one (a command that needs only its sections). Raises :class:`ConfigError` with one line
    per problem: the layer the value came from, the key and what is wrong.
    """
    schema = load_schema()
    typed = [(name, coerce(dict(data), schema) if name in untyped else dict(data)) for name, data in layers]
    merged: dict = {}
    for _, data in typed:
        merged = merge(merged, data)
    if "manifest" not in merged and require_manifest:
        raise ConfigError(NO_MANIFEST)
    derived = "dataset" not in merged and isinstance(merged.get("manifest"), str)
    if derived:
        merged["dataset"] = Path(merged["manifest"]).stem
        if merged["manifest"] == "-":  # the placeholder of callers that want sections only
            del merged["dataset"]
    filled = copy.deepcopy(merged)
    validator = _validator_with_defaults()(schema)
    errors = sorted((e for e in validator.iter_errors(filled)
                     if require_manifest or not (e.validator == "required" and not e.absolute_path)),
                    key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        lines = []
        for e in errors:
            for path in _error_paths(e):
                if derived and path == ("dataset",):
                    src = f"the manifest's file name ({merged['manifest']}; set dataset=NAME)"
                else:
                    src = source_of(path, typed)
                lines.append(f"{src}: {_where(tuple(e.absolute_path))}: {e.message}")
        raise ConfigError("invalid configuration\n  " + "\n  ".join(dict.fromkeys(lines)))
    return filled


def validate_config(config: Mapping, source: str = "config") -> dict:
    """Return a validated deep copy of ``config`` with the schema defaults filled in.

    Raises :class:`ConfigError` naming ``source``, the offending key and value.
    """
    if "manifest" not in config:
        raise ConfigError(f"{source}: {NO_MANIFEST}")
    return validate_layers([(source, config)], untyped=())


def read_config_file(path: str | Path) -> dict:
    """A YAML config file as a dict (ConfigError naming the file when it is not one)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    with open(path, encoding="utf-8") as fh:
        try:
            data = yaml.safe_load(fh) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def load_config(path: str | Path, overrides: dict | None = None) -> dict:
    """Read a YAML config file, apply ``overrides`` (merged key by key) and validate it.

    The file need not name a manifest (the repository's config.yaml does not): a
    command that needs one takes it from its own options.
    """
    layers = [(str(path), read_config_file(path))]
    if overrides:
        layers.append(("overrides", overrides))
    return validate_layers(layers, untyped=(), require_manifest=False)


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable ``parts`` (cache keys, config hashes)."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]
