"""`bigquery_load` params, checked by apply:

  source_uris        gs:// URIs (a '*' wildcard allowed in the object name), templated
                     by the run's slot: {slot:%Y-%m-%d}, {interval_start:%Y%m%d%H}
  destination        project.dataset.table
  format             csv | json (newline-delimited) | parquet | avro | orc
  schema             [{name, type, mode}] ... or
  autodetect         true (one of the two)
  write_disposition  WRITE_APPEND (default) | WRITE_TRUNCATE | WRITE_EMPTY
  timeout            sent as jobTimeoutMs and kept by Freshet
"""

import re
import string
from dataclasses import dataclass
from datetime import timedelta

from freshet.core.errors import ValidationError
from freshet.core.observe import parse_gcs_prefix
from freshet.loop.syncs import engine_params as p

KEYS = ("source_uris", "destination", "format", "schema", "autodetect",
        "write_disposition", "timeout")
FORMATS = ("csv", "json", "parquet", "avro", "orc")
TYPES = ("STRING", "BYTES", "INT64", "INTEGER", "FLOAT64", "FLOAT", "NUMERIC", "BIGNUMERIC",
         "BOOL", "BOOLEAN", "TIMESTAMP", "DATE", "TIME", "DATETIME", "GEOGRAPHY", "JSON")
MODES = ("NULLABLE", "REQUIRED", "REPEATED")
TEMPLATE_FIELDS = ("slot", "interval_start")
MAX_URIS = 10_000
MAX_TIMEOUT = timedelta(days=7)
_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,299}$")


@dataclass(frozen=True)
class LoadParams:
    source_uris: tuple[str, ...]
    destination: str
    format: str = "csv"
    schema: tuple[tuple[str, str, str], ...] = ()
    autodetect: bool = False
    write_disposition: str = "WRITE_APPEND"
    timeout: timedelta | None = None


def _uri(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise ValidationError(where, "must be a gs:// URI")
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(value) if name is not None]
    except ValueError as exc:
        raise ValidationError(where, f"a bad template: {exc}") from None
    for name in fields:
        if name not in TEMPLATE_FIELDS:
            raise ValidationError(where, f"{{{name}}} is not a template field (use "
                                  "{slot:%Y-%m-%d} or {interval_start:...})")
    bare = re.sub(r"\{[^}]*\}", "x", value).replace("*", "x")
    parse_gcs_prefix(bare, where)
    return value


def _schema(value: object, where: str) -> tuple[tuple[str, str, str], ...]:
    if not isinstance(value, list) or not value:
        raise ValidationError(where, "must be a list of {name, type, mode}")
    found = []
    for i, raw in enumerate(value):
        col = p.params_of(raw, f"{where}[{i}]", ("name", "type", "mode"), ("name", "type"))
        if not isinstance(col["name"], str) or not _COLUMN.match(col["name"]):
            raise ValidationError(f"{where}[{i}].name", "letters, digits or '_', not "
                                  "starting with a digit")
        kind = str(col["type"]).upper()
        if kind not in TYPES:
            raise ValidationError(f"{where}[{i}].type", f"must be one of {', '.join(TYPES)}")
        mode = str(col.get("mode", "NULLABLE")).upper()
        if mode not in MODES:
            raise ValidationError(f"{where}[{i}].mode", f"must be one of {', '.join(MODES)}")
        found.append((col["name"], kind, mode))
    return tuple(found)


def check(params: object, where: str = "params") -> LoadParams:
    doc = p.params_of(params, where, KEYS, ("source_uris", "destination"))
    uris = doc["source_uris"]
    if isinstance(uris, str):
        uris = [uris]
    if not isinstance(uris, list) or not 1 <= len(uris) <= MAX_URIS:
        raise ValidationError(f"{where}.source_uris", f"must list 1 to {MAX_URIS:,} gs:// URIs")
    fmt = doc.get("format", "csv")
    if fmt not in FORMATS:
        raise ValidationError(f"{where}.format", f"must be one of {', '.join(FORMATS)}")
    has_schema, autodetect = "schema" in doc, doc.get("autodetect")
    if autodetect is not None and not isinstance(autodetect, bool):
        raise ValidationError(f"{where}.autodetect", "must be true or false")
    if has_schema == bool(autodetect) and fmt in ("csv", "json"):
        raise ValidationError(f"{where}.schema", "give a schema or autodetect: true "
                              "(one of the two)")
    return LoadParams(
        source_uris=tuple(_uri(u, f"{where}.source_uris[{i}]") for i, u in enumerate(uris)),
        destination=p.table(doc, "destination", where), format=fmt,
        schema=_schema(doc["schema"], f"{where}.schema") if has_schema else (),
        autodetect=bool(autodetect),
        write_disposition=p.disposition(doc, where, "WRITE_APPEND"),
        timeout=p.timeout(doc, where, MAX_TIMEOUT))
