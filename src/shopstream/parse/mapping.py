"""Declarative mappings: a source's own record shape -> canonical event fields, as data.

A mapping is a TOML file (the public format is documented in README, "Mappings"); the
built-in formats are mappings shipped in ``parse/mappings/``. :func:`apply_mapping` turns a
frame of source records (CSV text columns, or JSON values as Polars read them: structs,
lists, numbers) into the canonical text columns every engine normalises and validates
alike, plus ``properties`` (every field the mapping does not name, as a JSON object).
Everything is a Polars expression over the whole frame; the only per-row Python is hashing,
and only for rows that need a derived id or a hashed value.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import polars as pl
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from shopstream.parse.formats import TRANSFORMS, uuid_of
from shopstream.schema import REQUIRED_FIELDS, SOURCE_FIELDS, EventType, InputFormat

Disposition = Literal["custom", "ignore"]
_DISPOSITIONS: Final = frozenset(("custom", "ignore"))
_CANONICAL_TYPES: Final = frozenset(t.value for t in EventType)
_UUID: Final = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_TIMESTAMP_OUT: Final = "%Y-%m-%d %H:%M:%S%.6f"
ALL_FIELDS: Final = "*"  # derive_from: the whole record as received
ELEMENT: Final = "_element"
_NEEDS_ID: Final = "_needs_derived_id"  # working columns of apply_mapping
_IGNORED: Final = "_ignored_type"


class MappingError(ValueError):
    """A mapping file that cannot be used; the message names the key at fault."""


def _as_tuple(value: object) -> object:
    return (value,) if isinstance(value, str) else value


Paths = Annotated[tuple[str, ...], BeforeValidator(_as_tuple)]


class _Source(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    explode: str | None = None
    header: tuple[str, ...] | None = None  # built-ins: a CSV header recognised as this format
    keys: tuple[str, ...] | None = None  # built-ins: JSON keys recognised as this format
    transform: Literal["rees46", "online-retail"] | None = None


class _EventId(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    derive_from: Paths | None = None


class _Timestamp(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    format: str | None = None
    timezone: str | None = None


class _Privacy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    drop: tuple[str, ...] = ()
    hash: tuple[str, ...] = ()


class _Rules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    max_price: float | None = Field(default=None, gt=0, lt=100_000_000)
    max_quantity: int | None = Field(default=None, ge=1, le=2**31 - 1)
    max_future_seconds: int | None = Field(default=None, ge=0)


class _MappingFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str | None = None
    source: _Source = _Source()
    fields: dict[str, Paths] = {}
    event_types: dict[str, str] = {}
    defaults: dict[str, str | int | float] = {}
    event_id: _EventId = _EventId()
    timestamp: _Timestamp = _Timestamp()
    privacy: _Privacy = _Privacy()
    rules: _Rules = _Rules()


@dataclass(frozen=True, slots=True)
class Mapping:
    """One source shape's mapping, validated (see :func:`load_mapping`)."""

    name: str
    fields: dict[str, tuple[str, ...]] = field(default_factory=dict)
    explode: str | None = None
    event_types: dict[str, str] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)
    derive_from: tuple[str, ...] | None = None
    timestamp_format: str | None = None
    timezone: str | None = None
    drop: tuple[str, ...] = ()
    hash: tuple[str, ...] = ()
    max_price: float | None = None
    max_quantity: int | None = None
    max_future_seconds: int | None = None
    header: tuple[str, ...] | None = None
    keys: tuple[str, ...] | None = None
    transform: str | None = None
    builtin: bool = False

    def sources_of(self, canonical: str) -> tuple[str, ...]:
        """Where a canonical field's value comes from: the mapped paths, else its name."""
        return self.fields.get(canonical, (canonical,))

    @property
    def custom_types(self) -> frozenset[str]:
        return frozenset(k for k, v in self.event_types.items() if v == "custom")

    @property
    def ignored_types(self) -> frozenset[str]:
        return frozenset(k for k, v in self.event_types.items() if v == "ignore")

    def missing_fields(self, columns: Iterable[str]) -> list[str]:
        """Required canonical fields no column (or default, or derived id) can fill."""
        top = {c.lower() for c in columns}
        missing = []
        for name in REQUIRED_FIELDS:
            if name in self.defaults or (name == "event_id" and self.derive_from):
                continue
            if self.transform is not None:
                continue
            roots = {_root(p, self.explode) for p in self.sources_of(name)}
            if not roots & top:
                missing.append(name)
        return missing


def _root(path: str, explode: str | None) -> str:
    head = path.split("[]", 1)[0].split(".", 1)[0]
    return explode if explode is not None and head == explode else head


def load_mapping(path: Path) -> Mapping:
    """A user's mapping file, checked: unknown keys and values are errors naming the key."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise MappingError(f"{path}: {error}") from error
    return mapping_from_toml(data, name=path.stem, where=str(path))


def mapping_from_toml(data: dict[str, object], *, name: str, where: str) -> Mapping:
    try:
        parsed = _MappingFile.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        raise MappingError(f"{where}: {problems}") from error
    unknown = sorted(set(parsed.fields) - set(SOURCE_FIELDS))
    if unknown:
        raise MappingError(
            f"{where}: [fields] names no canonical field {unknown}; the fields are "
            + ", ".join(SOURCE_FIELDS)
        )
    event_types = {k.strip().lower(): v.strip().lower() for k, v in parsed.event_types.items()}
    bad_types = sorted(
        f"{k} = {v!r}"
        for k, v in event_types.items()
        if v not in _CANONICAL_TYPES and v not in _DISPOSITIONS
    )
    if bad_types:
        raise MappingError(
            f"{where}: [event_types] {', '.join(bad_types)}: a value is a canonical type ("
            + ", ".join(sorted(_CANONICAL_TYPES))
            + '), "custom" or "ignore"'
        )
    bad_defaults = sorted(set(parsed.defaults) - set(SOURCE_FIELDS))
    if bad_defaults:
        raise MappingError(f"{where}: [defaults] names no canonical field {bad_defaults}")
    mapped_paths = {p for paths in parsed.fields.values() for p in paths}
    nested_hash = [p for p in parsed.privacy.hash if "." in p and p not in mapped_paths]
    if nested_hash:
        raise MappingError(
            f"{where}: [privacy] hash {nested_hash}: a nested path must be mapped to a field"
        )
    if parsed.timestamp.timezone is not None:
        _check_timezone(parsed.timestamp.timezone, where)
    return Mapping(
        name=parsed.name or name,
        fields=dict(parsed.fields),
        explode=parsed.source.explode,
        event_types=event_types,
        defaults={k: str(v) for k, v in parsed.defaults.items()},
        derive_from=parsed.event_id.derive_from,
        timestamp_format=parsed.timestamp.format,
        timezone=parsed.timestamp.timezone,
        drop=parsed.privacy.drop,
        hash=parsed.privacy.hash,
        max_price=parsed.rules.max_price,
        max_quantity=parsed.rules.max_quantity,
        max_future_seconds=parsed.rules.max_future_seconds,
        header=tuple(h.lower() for h in parsed.source.header) if parsed.source.header else None,
        keys=parsed.source.keys,
        transform=parsed.source.transform,
    )


def _check_timezone(zone: str, where: str) -> None:
    try:
        pl.Series([datetime(2020, 1, 1)]).dt.replace_time_zone(zone)
    except pl.exceptions.PolarsError as error:
        raise MappingError(f"{where}: [timestamp] timezone {zone!r} is unknown") from error


def _load_builtins() -> dict[InputFormat, Mapping]:
    folder = resources.files("shopstream.parse") / "mappings"
    found = {}
    for fmt in InputFormat:
        text = (folder / f"{fmt.value}.toml").read_text(encoding="utf-8")
        mapping = mapping_from_toml(tomllib.loads(text), name=fmt.value, where=f"built-in {fmt}")
        found[fmt] = replace(mapping, name=fmt.value, builtin=True)
    return found


BUILTIN: Final[dict[InputFormat, Mapping]] = _load_builtins()


def recognise_header(names: list[str]) -> Mapping | None:
    """The built-in mapping whose CSV header this is exactly, if any."""
    key = tuple(n.strip().lower() for n in names)
    return next((m for m in BUILTIN.values() if m.header == key), None)


def recognise_keys(keys: Iterable[str]) -> Mapping:
    """The built-in mapping for a JSON record with these top-level keys."""
    present = set(keys)
    for mapping in BUILTIN.values():
        if mapping.keys is not None and set(mapping.keys) <= present:
            return mapping
    return BUILTIN[InputFormat.JSONL]


@dataclass(frozen=True, slots=True)
class MappingChoice:
    """How a source's records are mapped: one mapping for every file (``--mapping``, or a
    built-in named by ``--format``; ``strict`` rejects files recognised as another
    format), else each file's recognised built-in. ``hash_key`` keys privacy hashing."""

    given: Mapping | None = None
    strict: bool = False
    hash_key: bytes = b""
    custom_types: frozenset[str] = frozenset()


NO_CHOICE: Final = MappingChoice()


def choose(
    input_format: InputFormat | None,
    mapping_file: Path | None,
    *,
    hash_key: bytes,
    custom_types: Iterable[str] = (),
) -> MappingChoice:
    """The choice a run makes from ``--format``/``--mapping`` (the latter wins)."""
    declared = frozenset(t.strip().lower() for t in custom_types if t.strip())
    if mapping_file is not None:
        return MappingChoice(load_mapping(mapping_file), False, hash_key, declared)
    if input_format is not None:
        return MappingChoice(BUILTIN[input_format], True, hash_key, declared)
    return MappingChoice(None, False, hash_key, declared)


# -- applying a mapping ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mapped:
    """Records mapped to canonical text columns (plus ``properties``, rule columns,
    ``_line`` and ``_element``); ``ignored`` counts records of an ignored type."""

    frame: pl.DataFrame
    ignored: int
    unmapped: tuple[str, ...]


def apply_mapping(
    frame: pl.DataFrame,
    mapping: Mapping,
    choice: MappingChoice = NO_CHOICE,
    now: datetime | None = None,
) -> Mapped:
    """Map source records (any columns, plus ``_line``) to canonical text columns. The
    canonical fields, their defaults, the event types and the rule columns are one Polars
    plan over the records; only derived ids, zone conversion and hashing look at values
    between steps, and only when the mapping asks for them."""
    records = frame
    if mapping.transform is not None:
        transformed = TRANSFORMS[mapping.transform](frame.drop("_line"))
        records = transformed.with_columns(frame.get_column("_line"))
    records = _hashed_columns(records, mapping, choice.hash_key)
    if mapping.explode is not None and mapping.explode in records.columns:
        records = _exploded(records, mapping.explode)
    schema = records.schema
    columns = {name: _field(schema, mapping, name) for name in SOURCE_FIELDS}
    named = {p for name in SOURCE_FIELDS for p in _named_paths(mapping, name, schema)}
    kept = [c for c in schema if c not in ("_line", ELEMENT)]
    properties, unmapped = _properties(records, kept, named, mapping)
    needs_id = _needs_derived_id(columns["event_id"], mapping)
    columns = _defaulted(columns, mapping)
    kind = columns["event_type"].str.strip_chars().str.to_lowercase()
    renames = {k: v for k, v in mapping.event_types.items() if v not in _DISPOSITIONS}
    columns["event_type"] = kind.replace(renames) if renames else kind
    custom = sorted(mapping.custom_types | choice.custom_types)
    ignored_types = sorted(mapping.ignored_types)
    out = records.select(
        *(expr.alias(name) for name, expr in columns.items()),
        properties.alias("properties"),
        *(pl.col(c) for c in ("invoice_no",) if c in schema),
        pl.col("_line"),
        (pl.col(ELEMENT) if ELEMENT in schema else pl.lit(None, dtype=pl.Int64)).alias(ELEMENT),
        (pl.when(kind.is_in(custom)).then(pl.lit("custom")) if custom else pl.lit(None))
        .cast(pl.String)
        .alias("custom_type"),
        *_rule_columns(mapping, now),
        needs_id.alias(_NEEDS_ID),
        *(
            [kind.is_in(ignored_types).fill_null(value=False).alias(_IGNORED)]
            if ignored_types
            else []
        ),
    )
    out = _with_derived_ids(out, records, mapping)
    out = _with_timestamps(out, mapping)
    out = _with_hashed_fields(out, mapping, choice.hash_key)
    if not ignored_types:
        return Mapped(out, 0, unmapped)
    ignored = int(out.get_column(_IGNORED).sum())
    kept_rows = out.filter(~pl.col(_IGNORED)) if ignored else out
    return Mapped(kept_rows.drop(_IGNORED), ignored, unmapped)


def _exploded(records: pl.DataFrame, column: str) -> pl.DataFrame:
    """One row per element of ``column`` (an empty or missing list keeps its record as one
    row without element), with the element's index in ``_element``."""
    dtype = records.schema[column]
    if not isinstance(dtype, pl.List):
        return records.with_columns(pl.lit(None, dtype=pl.Int64).alias(ELEMENT))
    items = pl.col(column)
    length = items.list.len().fill_null(0)
    return records.with_columns(
        pl.when(length > 0).then(items).alias(column),
        pl.when(length > 0).then(pl.int_ranges(0, length, dtype=pl.Int64)).alias(ELEMENT),
    ).explode(column, ELEMENT)


def _path_expr(schema: pl.Schema, path: str, explode: str | None) -> tuple[pl.Expr, Any] | None:
    """The value at a dotted path (``a.b``; ``items[].price`` for an exploded element) and
    its type, or None when no record of the frame has it. A text column holding JSON is
    looked into. Types come from the schema alone (deeply nested ones are never built)."""
    if path in schema:
        return pl.col(path), schema[path]
    if path.lower() in schema:
        return pl.col(path.lower()), schema[path.lower()]
    parts = [p for p in path.replace("[]", "").split(".") if p]
    if not parts or parts[0] not in schema:
        return None
    if explode is not None and parts[0] != explode and path.startswith(f"{explode}[]"):
        return None
    expr: pl.Expr = pl.col(parts[0])
    dtype: Any = schema[parts[0]]
    for index, part in enumerate(parts[1:], start=1):
        if isinstance(dtype, pl.Struct):
            fields = {f.name: f.dtype for f in dtype.fields}
            if part not in fields:
                return None
            expr, dtype = expr.struct.field(part), fields[part]
        elif dtype == pl.String:
            return expr.str.json_path_match("$." + ".".join(parts[index:])), pl.String()
        else:
            return None
    return expr, dtype


def _as_text(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    if dtype == pl.String:
        return expr
    if isinstance(dtype, pl.Struct):
        return expr.struct.json_encode()
    if isinstance(dtype, pl.List | pl.Array):
        return pl.struct(expr.alias("v")).struct.json_encode().str.slice(5).str.strip_suffix("}")
    return expr.cast(pl.String)


def _typed_path(schema: pl.Schema, path: str, explode: str | None) -> pl.Expr | None:
    found = _path_expr(schema, path, explode)
    if found is None:
        return None
    return _as_text(*found)


def _field(schema: pl.Schema, mapping: Mapping, name: str) -> pl.Expr:
    """A canonical field: the first of its source paths holding a non-empty value."""
    found = [
        e.replace("", None)
        for path in mapping.sources_of(name)
        if path not in mapping.drop
        if (e := _typed_path(schema, path, mapping.explode)) is not None
    ]
    if not found:
        return pl.lit(None, dtype=pl.String)
    return found[0] if len(found) == 1 else pl.coalesce(found)


def _named_paths(mapping: Mapping, name: str, schema: pl.Schema) -> list[str]:
    return [p.replace("[]", "") for p in mapping.sources_of(name) if _root(p, None) in schema]


def _properties(
    records: pl.DataFrame, columns: list[str], named: set[str], mapping: Mapping
) -> tuple[pl.Expr, tuple[str, ...]]:
    """A JSON object of every value the mapping neither names nor drops (None when the
    record has none), and the top-level fields that went into it. Text fields that every
    record of the frame holds are encoded together, in one pass: each entry of a JSON
    object is encoded the same whether it is encoded alone or beside others."""
    schema = records.schema
    dropped = {d.replace("[]", "") for d in mapping.drop}
    kept = [c for c in columns if c not in named and c not in dropped and c != "invoice_no"]
    full = _always_present(records, [c for c in kept if schema[c] == pl.String])
    pieces = []
    if full:
        together = pl.struct(pl.col(c) for c in full).struct.json_encode()
        if len(full) == len(kept):
            return together, tuple(full)
        pieces.append(together.str.slice(1).str.strip_suffix("}"))
    unmapped = list(full)
    for column in kept:
        if column in full:
            continue
        value = _pruned(pl.col(column), schema[column], column, named | dropped)
        if value is None:
            continue
        unmapped.append(column)
        entry = pl.struct(value.alias(column)).struct.json_encode()
        present = value.is_not_null()
        if schema[column] == pl.String:
            present = present & (value != "")
        pieces.append(pl.when(present).then(entry.str.slice(1).str.strip_suffix("}")))
    if not pieces:
        return pl.lit(None, dtype=pl.String), ()
    body = pl.concat_str(pieces, separator=",", ignore_nulls=True)
    return (
        pl.when(body != "").then(pl.lit("{") + body + pl.lit("}")),
        tuple(unmapped),
    )


def _always_present(records: pl.DataFrame, text_columns: list[str]) -> list[str]:
    """The text columns that hold a non-empty value in every record."""
    if not text_columns or records.is_empty():
        return []
    present = records.select(
        (pl.col(c).is_not_null() & (pl.col(c) != "")).all() for c in text_columns
    ).row(0)
    return [c for c, all_present in zip(text_columns, present, strict=True) if all_present]


def _pruned(expr: pl.Expr, dtype: Any, path: str, removed: set[str]) -> pl.Expr | None:
    """A struct without the sub-fields at ``removed`` paths (None when nothing is left)."""
    inner = [r for r in removed if r.startswith(path + ".")]
    if not inner or not isinstance(dtype, pl.Struct):
        return expr
    kept = []
    for sub in dtype.fields:
        sub_path = f"{path}.{sub.name}"
        if sub_path in removed:
            continue
        pruned = _pruned(expr.struct.field(sub.name), sub.dtype, sub_path, removed)
        if pruned is not None:
            kept.append(pruned.alias(sub.name))
    if not kept:
        return None
    # What is left of a struct is absent when none of it holds a value.
    return pl.when(pl.any_horizontal(k.is_not_null() for k in kept)).then(pl.struct(kept))


def _defaulted(columns: dict[str, pl.Expr], mapping: Mapping) -> dict[str, pl.Expr]:
    """A field's ``[defaults]`` value where the source has none (or only blanks)."""
    return {
        name: pl.coalesce(expr.str.strip_chars().replace("", None), pl.lit(mapping.defaults[name]))
        if name in mapping.defaults
        else expr
        for name, expr in columns.items()
    }


def _with_timestamps(frame: pl.DataFrame, mapping: Mapping) -> pl.DataFrame:
    """With a ``[timestamp]`` format or zone, times become naive UTC text; text the format
    does not match is left as received (the standard spellings are still tried later)."""
    if mapping.timestamp_format is None and mapping.timezone is None:
        return frame
    text = pl.col("event_timestamp").str.strip_chars()
    fmt = mapping.timestamp_format
    if fmt in ("unix", "unix_ms"):
        number = text.cast(pl.Float64, strict=False)
        scale = 1_000_000 if fmt == "unix" else 1_000
        parsed = (number * scale).round(0).cast(pl.Int64).cast(pl.Datetime("us"))
    elif fmt is not None:
        parsed = text.str.to_datetime(fmt, strict=False, time_unit="us")
    else:
        parsed = text.str.replace("T", " ", literal=True).str.to_datetime(
            "%Y-%m-%d %H:%M:%S%.f", strict=False, time_unit="us"
        )
    parsed_times = frame.select(parsed.alias("t")).to_series()
    utc = (
        parsed_times.dt.replace_time_zone(
            mapping.timezone or "UTC", ambiguous="earliest", non_existent="null"
        )
        .dt.convert_time_zone("UTC")
        .dt.replace_time_zone(None)
    )
    return frame.with_columns(
        pl.coalesce(utc.dt.strftime(_TIMESTAMP_OUT), pl.col("event_timestamp")).alias(
            "event_timestamp"
        )
    )


def _needs_derived_id(event_id: pl.Expr, mapping: Mapping) -> pl.Expr:
    """Rows whose id the mapping derives: missing, or not a UUID."""
    if not mapping.derive_from:
        return pl.lit(value=False)
    return (event_id.is_null() | ~event_id.str.contains(_UUID)).fill_null(value=True)


def _with_derived_ids(frame: pl.DataFrame, records: pl.DataFrame, mapping: Mapping) -> pl.DataFrame:
    """A deterministic UUID where :func:`_needs_derived_id` says so, from ``derive_from``
    (and the element's index under ``explode``): re-reading a record gives the same id."""
    needs = frame.get_column(_NEEDS_ID)
    frame = frame.drop(_NEEDS_ID)
    if not needs.any():
        return frame
    targets = needs.arg_true()
    if mapping.derive_from == (ALL_FIELDS,):
        source = records.drop("_line", ELEMENT, strict=False)
        parts = [_as_text(pl.col(c), source.schema[c]).fill_null("") for c in source.columns]
    else:
        schema = records.schema
        parts = [
            (e if (e := _typed_path(schema, p, mapping.explode)) is not None else pl.lit(None))
            .cast(pl.String)
            .fill_null("")
            for p in mapping.derive_from or ()
        ]
    elements = frame.get_column(ELEMENT).gather(targets).to_list()
    keys = records.filter(needs).select(pl.concat_str(parts, separator="\x1f")).to_series()
    ids = [
        uuid_of(f"{key}\x1e{'' if element is None else element}")
        for key, element in zip(keys.to_list(), elements, strict=True)
    ]
    return frame.with_columns(frame.get_column("event_id").scatter(targets, ids))


@functools.lru_cache(maxsize=1 << 16)
def pseudonym(key: bytes, value: str) -> str:
    """A stable pseudonym for a value: HMAC-SHA-256 under the installation's key, 32 hex.
    Remembered: the same addresses come back file after file."""
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:32]


def _hash_series(values: pl.Series, key: bytes) -> pl.Series:
    """Hash each distinct value once (ip addresses and e-mails repeat)."""
    text = values.cast(pl.String) if values.dtype != pl.String else values
    distinct = text.drop_nulls().unique().to_list()
    table = {value: pseudonym(key, value) for value in distinct}
    return text.replace_strict(table, default=None, return_dtype=pl.String).alias(values.name)


def _hashed_columns(records: pl.DataFrame, mapping: Mapping, key: bytes) -> pl.DataFrame:
    """Top-level source fields listed under ``[privacy] hash``, pseudonymised in place."""
    columns = [c for c in mapping.hash if c in records.columns]
    if not columns:
        return records
    return records.with_columns(_hash_series(records.get_column(c), key) for c in columns)


def _with_hashed_fields(frame: pl.DataFrame, mapping: Mapping, key: bytes) -> pl.DataFrame:
    """Canonical fields mapped from a nested path listed under ``[privacy] hash``."""
    nested = [p for p in mapping.hash if "." in p]
    targets = [name for name, paths in mapping.fields.items() if set(paths) & set(nested)]
    if not targets:
        return frame
    return frame.with_columns(_hash_series(frame.get_column(n), key) for n in targets)


def _rule_columns(mapping: Mapping, now: datetime | None) -> list[pl.Expr]:
    """The mapping's own limits as row columns the rules read (NULL: the setting's)."""
    latest = None
    if mapping.max_future_seconds is not None:
        moment = (now or datetime.now(UTC)).replace(tzinfo=None)
        latest = (moment + timedelta(seconds=mapping.max_future_seconds)).strftime(
            "%Y-%m-%d %H:%M:%S"
        )
    values = {
        "rule_max_price": mapping.max_price,
        "rule_max_quantity": mapping.max_quantity,
        "rule_max_event_time": latest,
    }
    return [
        pl.lit(None if v is None else str(v), dtype=pl.String).alias(k) for k, v in values.items()
    ]


def unknown_columns_hint(names: list[str], missing: list[str]) -> str:
    """For a header that lacks required fields: the closest columns by name or synonym."""
    from shopstream.parse.suggest import closest_columns

    hints = []
    for name in missing:
        candidates = closest_columns(name, names)
        hints.append(
            f"no {name}" + (f"; did you mean {' or '.join(candidates)}?" if candidates else "")
        )
    return "; ".join(hints) + " (see --mapping and `shopstream mapping suggest`)"
