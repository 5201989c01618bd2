'use strict';
// Firestore values, field paths and ordering.
//
// Values are held internally as plain objects shaped like the protobuf
// "toObject" form ({integer_value: 1}, {map_value: {fields: {...}}}, ...) so
// they can be handed straight to the generated `fromObject` builders when we
// answer.  We never use the generated `toObject()` on requests: for oneof
// fields it reports every member with its default value (a null_value of 0 on
// every Value), which is exactly what makes the published package treat
// `where(x == None)` as "match everything".

const TYPE_ORDER = {
  null_value: 0,
  boolean_value: 1,
  integer_value: 2,
  double_value: 2, // ints and doubles interleave by numeric value
  timestamp_value: 3,
  string_value: 4,
  bytes_value: 5,
  reference_value: 6,
  geo_point_value: 7,
  array_value: 8,
  map_value: 9,
};

const NULL = Object.freeze({ null_value: 0 });

/** Converts a deserialized google-protobuf `Value` message into our plain form. */
function fromPb(v) {
  switch (v.value_type) {
    case 'null_value':
      return { null_value: 0 };
    case 'boolean_value':
      return { boolean_value: v.boolean_value };
    case 'integer_value':
      return { integer_value: v.integer_value };
    case 'double_value':
      return { double_value: v.double_value };
    case 'timestamp_value': {
      const t = v.timestamp_value;
      return { timestamp_value: { seconds: t.seconds, nanos: t.nanos } };
    }
    case 'string_value':
      return { string_value: v.string_value };
    case 'bytes_value':
      return { bytes_value: Uint8Array.from(v.bytes_value) };
    case 'reference_value':
      return { reference_value: v.reference_value };
    case 'geo_point_value': {
      const g = v.geo_point_value;
      return { geo_point_value: { latitude: g.latitude, longitude: g.longitude } };
    }
    case 'array_value':
      return { array_value: { values: v.array_value.values.map(fromPb) } };
    case 'map_value':
      return { map_value: { fields: fieldsFromPb(v.map_value.fields) } };
    default:
      // An empty Value message; Firestore treats it as null.
      return { null_value: 0 };
  }
}

/** Converts a protobuf map<string, Value> (a JS Map) into a plain object. */
function fieldsFromPb(map) {
  const out = {};
  if (map) for (const [k, v] of map) out[k] = fromPb(v);
  return out;
}

function typeOf(v) {
  for (const k in v) return k;
  return 'null_value';
}

function typeOrder(v) {
  return TYPE_ORDER[typeOf(v)];
}

function isNumber(v) {
  return 'integer_value' in v || 'double_value' in v;
}

function numberOf(v) {
  return 'integer_value' in v ? v.integer_value : v.double_value;
}

function isNaNValue(v) {
  return 'double_value' in v && Number.isNaN(v.double_value);
}

function cmp(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}

// Firestore orders strings by UTF-8 bytes, i.e. by code point.  JS compares
// UTF-16 code units, which disagrees only when a surrogate (a code point above
// U+FFFF) meets a BMP character in U+E000..U+FFFF.
function compareStrings(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) {
      const xs = x >= 0xd800 && x <= 0xdfff;
      const ys = y >= 0xd800 && y <= 0xdfff;
      if (xs !== ys) return xs ? 1 : -1;
      return x < y ? -1 : 1;
    }
  }
  return cmp(a.length, b.length);
}

function compareBytes(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1;
  return cmp(a.length, b.length);
}

function compareNumbers(a, b) {
  const an = Number.isNaN(a);
  const bn = Number.isNaN(b);
  if (an || bn) return an && bn ? 0 : an ? -1 : 1; // NaN sorts before all numbers
  return cmp(a, b);
}

function compareTimestamps(a, b) {
  return cmp(a.seconds, b.seconds) || cmp(a.nanos, b.nanos);
}

function compareReferences(a, b) {
  const as = a.split('/');
  const bs = b.split('/');
  const n = Math.min(as.length, bs.length);
  for (let i = 0; i < n; i++) {
    const c = compareStrings(as[i], bs[i]);
    if (c) return c;
  }
  return cmp(as.length, bs.length);
}

function compareMaps(a, b) {
  const ak = Object.keys(a).sort(compareStrings);
  const bk = Object.keys(b).sort(compareStrings);
  const n = Math.min(ak.length, bk.length);
  for (let i = 0; i < n; i++) {
    const c = compareStrings(ak[i], bk[i]) || compare(a[ak[i]], b[bk[i]]);
    if (c) return c;
  }
  return cmp(ak.length, bk.length);
}

/** Total order over values, following Firestore's cross-type ordering. */
function compare(a, b) {
  const ta = typeOf(a);
  const tb = typeOf(b);
  const c = cmp(TYPE_ORDER[ta], TYPE_ORDER[tb]);
  if (c) return c;
  switch (ta) {
    case 'null_value':
      return 0;
    case 'boolean_value':
      return cmp(a.boolean_value, b.boolean_value);
    case 'integer_value':
    case 'double_value':
      return compareNumbers(numberOf(a), numberOf(b));
    case 'timestamp_value':
      return compareTimestamps(a.timestamp_value, b.timestamp_value);
    case 'string_value':
      return compareStrings(a.string_value, b.string_value);
    case 'bytes_value':
      return compareBytes(a.bytes_value, b.bytes_value);
    case 'reference_value':
      return compareReferences(a.reference_value, b.reference_value);
    case 'geo_point_value':
      return (
        compareNumbers(a.geo_point_value.latitude, b.geo_point_value.latitude) ||
        compareNumbers(a.geo_point_value.longitude, b.geo_point_value.longitude)
      );
    case 'array_value': {
      const av = a.array_value.values;
      const bv = b.array_value.values;
      const n = Math.min(av.length, bv.length);
      for (let i = 0; i < n; i++) {
        const e = compare(av[i], bv[i]);
        if (e) return e;
      }
      return cmp(av.length, bv.length);
    }
    case 'map_value':
      return compareMaps(a.map_value.fields, b.map_value.fields);
    default:
      return 0;
  }
}

function equals(a, b) {
  return compare(a, b) === 0;
}

function arrayContains(values, v) {
  for (const x of values) if (equals(x, v)) return true;
  return false;
}

function clone(v) {
  if ('map_value' in v) return { map_value: { fields: cloneFields(v.map_value.fields) } };
  if ('array_value' in v) return { array_value: { values: v.array_value.values.map(clone) } };
  // Leaf values are never mutated in place, sharing them is safe.
  return v;
}

function cloneFields(fields) {
  const out = {};
  for (const k in fields) out[k] = clone(fields[k]);
  return out;
}

// ---------------------------------------------------------------------------
// Field paths ("a.b", "`odd.key`.c", "__name__").

const pathCache = new Map();

/** Splits a Firestore field path string into segments (backtick quoting, \\ escapes). */
function parseFieldPath(path) {
  let segs = pathCache.get(path);
  if (segs) return segs;
  segs = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < path.length; i++) {
    const ch = path[i];
    if (quoted) {
      if (ch === '\\' && i + 1 < path.length) cur += path[++i];
      else if (ch === '`') quoted = false;
      else cur += ch;
    } else if (ch === '`') quoted = true;
    else if (ch === '.') {
      segs.push(cur);
      cur = '';
    } else cur += ch;
  }
  segs.push(cur);
  if (pathCache.size > 10000) pathCache.clear();
  pathCache.set(path, segs);
  return segs;
}

function getPath(fields, segs) {
  let cur = fields;
  for (let i = 0; i < segs.length - 1; i++) {
    const v = cur[segs[i]];
    if (!v || !('map_value' in v)) return undefined;
    cur = v.map_value.fields;
  }
  return Object.hasOwn(cur, segs[segs.length - 1]) ? cur[segs[segs.length - 1]] : undefined;
}

/** Sets a nested field, creating (or replacing non-map) intermediate maps. */
function setPath(fields, segs, value) {
  let cur = fields;
  for (let i = 0; i < segs.length - 1; i++) {
    let v = cur[segs[i]];
    if (!v || !('map_value' in v)) {
      v = { map_value: { fields: {} } };
      cur[segs[i]] = v;
    }
    cur = v.map_value.fields;
  }
  cur[segs[segs.length - 1]] = value;
}

function deletePath(fields, segs) {
  let cur = fields;
  for (let i = 0; i < segs.length - 1; i++) {
    const v = cur[segs[i]];
    if (!v || !('map_value' in v)) return;
    cur = v.map_value.fields;
  }
  delete cur[segs[segs.length - 1]];
}

/** Keeps only the given field paths (a DocumentMask / projection). */
function project(fields, paths) {
  const out = {};
  for (const p of paths) {
    const segs = parseFieldPath(p);
    if (segs.length === 1 && segs[0] === '__name__') continue;
    const v = getPath(fields, segs);
    if (v !== undefined) setPath(out, segs, clone(v));
  }
  return out;
}

module.exports = {
  NULL,
  fromPb,
  fieldsFromPb,
  typeOf,
  typeOrder,
  isNumber,
  numberOf,
  isNaNValue,
  compare,
  compareStrings,
  compareReferences,
  equals,
  arrayContains,
  clone,
  cloneFields,
  parseFieldPath,
  getPath,
  setPath,
  deletePath,
  project,
};
