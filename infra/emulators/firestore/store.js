'use strict';
// In-memory document store: atomic writes, preconditions, field transforms and
// the structured-query engine.
//
// This replaces the published package's FirestoreState.  Its immer-based tree
// copies a whole collection on every document access (the quadratic 10k-load
// slowdown), has no notion of nested field paths and cannot be fixed piecewise,
// so documents here live in two flat maps (by name, and by parent collection).

const { status: Code } = require('@grpc/grpc-js');
const V = require('./values');

class GrpcError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
    this.details = message;
  }
}

// Protobuf enum numbers (google/firestore/v1/query.proto, write.proto).
const FieldOp = {
  LESS_THAN: 1,
  LESS_THAN_OR_EQUAL: 2,
  GREATER_THAN: 3,
  GREATER_THAN_OR_EQUAL: 4,
  EQUAL: 5,
  NOT_EQUAL: 6,
  ARRAY_CONTAINS: 7,
  IN: 8,
  ARRAY_CONTAINS_ANY: 9,
  NOT_IN: 10,
};
const UnaryOp = { IS_NAN: 2, IS_NULL: 3, IS_NOT_NAN: 4, IS_NOT_NULL: 5 };
const CompositeOp = { AND: 1, OR: 2 };
const DESCENDING = 2;
const REQUEST_TIME = 1;

const INEQUALITY_OPS = new Set([
  FieldOp.LESS_THAN,
  FieldOp.LESS_THAN_OR_EQUAL,
  FieldOp.GREATER_THAN,
  FieldOp.GREATER_THAN_OR_EQUAL,
  FieldOp.NOT_EQUAL,
  FieldOp.NOT_IN,
]);

const NAME_SEGS = ['__name__'];

function parentOf(name) {
  return name.slice(0, name.lastIndexOf('/'));
}

function lastSegment(path) {
  return path.slice(path.lastIndexOf('/') + 1);
}

function tsKey(ts) {
  return ts ? `${ts.seconds}.${ts.nanos}` : 'missing';
}

// ---------------------------------------------------------------------------
// Request conversion (protobuf messages -> plain objects).

function preconditionFromPb(write) {
  if (!write.has_current_document) return null;
  const p = write.current_document;
  if (p.condition_type === 'exists') return { exists: p.exists };
  if (p.condition_type === 'update_time') {
    return { updateTime: { seconds: p.update_time.seconds, nanos: p.update_time.nanos } };
  }
  return null;
}

function transformFromPb(t) {
  const kind = t.transform_type;
  const out = { segs: V.parseFieldPath(t.field_path), kind };
  switch (kind) {
    case 'set_to_server_value':
      if (t.set_to_server_value !== REQUEST_TIME) {
        throw new GrpcError(Code.INVALID_ARGUMENT, 'unsupported server value');
      }
      break;
    case 'increment':
    case 'maximum':
    case 'minimum':
      out.operand = V.fromPb(t[kind]);
      if (!V.isNumber(out.operand)) {
        throw new GrpcError(Code.INVALID_ARGUMENT, `${kind} operand must be a number`);
      }
      break;
    case 'append_missing_elements':
    case 'remove_all_from_array':
      out.elements = t[kind].values.map(V.fromPb);
      break;
    default:
      throw new GrpcError(Code.INVALID_ARGUMENT, `invalid field transform on ${t.field_path}`);
  }
  return out;
}

function writeFromPb(w) {
  const precondition = preconditionFromPb(w);
  switch (w.operation) {
    case 'delete':
      return { op: 'delete', name: w.delete, precondition };
    case 'update':
      return {
        op: 'update',
        name: w.update.name,
        fields: V.fieldsFromPb(w.update.fields),
        mask: w.has_update_mask ? w.update_mask.field_paths.slice() : null,
        transforms: w.update_transforms.map(transformFromPb),
        precondition,
      };
    case 'transform':
      return {
        op: 'transform',
        name: w.transform.document,
        transforms: w.transform.field_transforms.map(transformFromPb),
        precondition,
      };
    default:
      throw new GrpcError(Code.INVALID_ARGUMENT, 'write has no operation');
  }
}

function filterFromPb(f) {
  switch (f.filter_type) {
    case 'composite_filter':
      return {
        kind: 'composite',
        op: f.composite_filter.op,
        filters: f.composite_filter.filters.map(filterFromPb),
      };
    case 'field_filter':
      return {
        kind: 'field',
        path: f.field_filter.field.field_path,
        op: f.field_filter.op,
        value: V.fromPb(f.field_filter.value),
      };
    case 'unary_filter':
      return { kind: 'unary', path: f.unary_filter.field.field_path, op: f.unary_filter.op };
    default:
      return null;
  }
}

function cursorFromPb(c) {
  return { values: c.values.map(V.fromPb), before: c.before };
}

function queryFromPb(q) {
  return {
    from: q.from.map((s) => ({ collectionId: s.collection_id, allDescendants: s.all_descendants })),
    where: q.has_where ? filterFromPb(q.where) : null,
    orderBy: q.order_by.map((o) => ({
      path: o.field.field_path,
      dir: o.direction === DESCENDING ? -1 : 1,
    })),
    startAt: q.has_start_at ? cursorFromPb(q.start_at) : null,
    endAt: q.has_end_at ? cursorFromPb(q.end_at) : null,
    offset: q.offset || 0,
    limit: q.has_limit ? q.limit.value : null,
    select: q.has_select ? q.select.fields.map((f) => f.field_path) : null,
  };
}

// ---------------------------------------------------------------------------
// Filters and ordering.

function fieldValue(doc, path) {
  const segs = V.parseFieldPath(path);
  if (segs.length === 1 && segs[0] === '__name__') return { reference_value: doc.name };
  return V.getPath(doc.fields, segs);
}

// Mirrors the matching rules of the official SDKs' FieldFilter: comparisons
// only match values of the same type class, a missing field never matches,
// and `!=` / `not-in` never match a missing field (not-in also skips null).
function matchField(f, v) {
  if (v === undefined) return false;
  const x = f.value;
  switch (f.op) {
    case FieldOp.EQUAL:
      return V.equals(v, x);
    case FieldOp.NOT_EQUAL:
      return !V.equals(v, x);
    case FieldOp.LESS_THAN:
      return V.typeOrder(v) === V.typeOrder(x) && V.compare(v, x) < 0;
    case FieldOp.LESS_THAN_OR_EQUAL:
      return V.typeOrder(v) === V.typeOrder(x) && V.compare(v, x) <= 0;
    case FieldOp.GREATER_THAN:
      return V.typeOrder(v) === V.typeOrder(x) && V.compare(v, x) > 0;
    case FieldOp.GREATER_THAN_OR_EQUAL:
      return V.typeOrder(v) === V.typeOrder(x) && V.compare(v, x) >= 0;
    case FieldOp.ARRAY_CONTAINS:
      return 'array_value' in v && V.arrayContains(v.array_value.values, x);
    case FieldOp.ARRAY_CONTAINS_ANY:
      return (
        'array_value' in v &&
        'array_value' in x &&
        v.array_value.values.some((e) => V.arrayContains(x.array_value.values, e))
      );
    case FieldOp.IN:
      return 'array_value' in x && V.arrayContains(x.array_value.values, v);
    case FieldOp.NOT_IN:
      return (
        !('null_value' in v) && 'array_value' in x && !V.arrayContains(x.array_value.values, v)
      );
    default:
      throw new GrpcError(Code.INVALID_ARGUMENT, `unsupported field filter operator ${f.op}`);
  }
}

function matchUnary(f, v) {
  switch (f.op) {
    case UnaryOp.IS_NULL:
      return v !== undefined && 'null_value' in v;
    case UnaryOp.IS_NOT_NULL:
      return v !== undefined && !('null_value' in v);
    case UnaryOp.IS_NAN:
      return v !== undefined && V.isNaNValue(v);
    case UnaryOp.IS_NOT_NAN:
      return v !== undefined && !V.isNaNValue(v);
    default:
      throw new GrpcError(Code.INVALID_ARGUMENT, `unsupported unary filter operator ${f.op}`);
  }
}

function compileFilter(f) {
  if (!f) return () => true;
  switch (f.kind) {
    case 'field':
      return (doc) => matchField(f, fieldValue(doc, f.path));
    case 'unary':
      return (doc) => matchUnary(f, fieldValue(doc, f.path));
    case 'composite': {
      const parts = f.filters.filter(Boolean).map(compileFilter);
      if (f.op === CompositeOp.OR) return (doc) => parts.some((p) => p(doc));
      return (doc) => parts.every((p) => p(doc));
    }
    default:
      return () => true;
  }
}

function collectInequalityPaths(f, out) {
  if (!f) return out;
  if (f.kind === 'composite') for (const g of f.filters) collectInequalityPaths(g, out);
  else if (f.kind === 'field' && INEQUALITY_OPS.has(f.op)) out.add(f.path);
  else if (f.kind === 'unary' && (f.op === UnaryOp.IS_NOT_NAN || f.op === UnaryOp.IS_NOT_NULL)) {
    out.add(f.path);
  }
  return out;
}

/**
 * The effective ordering Firestore applies: explicit order_by, then any
 * inequality-filtered fields not already ordered (lexicographically), then
 * __name__, the implicit ones in the direction of the last explicit order.
 */
function effectiveOrder(q) {
  const orders = q.orderBy.slice();
  const seen = new Set(orders.map((o) => o.path));
  const lastDir = orders.length ? orders[orders.length - 1].dir : 1;
  const ineq = [...collectInequalityPaths(q.where, new Set())].filter((p) => !seen.has(p));
  ineq.sort(V.compareStrings);
  for (const p of ineq) {
    orders.push({ path: p, dir: lastDir });
    seen.add(p);
  }
  if (!seen.has('__name__')) orders.push({ path: '__name__', dir: lastDir });
  return orders.map((o) => ({ ...o, segs: V.parseFieldPath(o.path) }));
}

function orderValue(doc, o) {
  if (o.segs.length === 1 && o.segs[0] === '__name__') return { reference_value: doc.name };
  return V.getPath(doc.fields, o.segs);
}

/** Compares a document's order values with a cursor's (cursor may be a prefix). */
function compareToCursor(doc, orders, cursor) {
  const n = Math.min(cursor.values.length, orders.length);
  for (let i = 0; i < n; i++) {
    let cv = cursor.values[i];
    const o = orders[i];
    // A __name__ cursor may hold a path relative to the query's parent.
    if (o.path === '__name__' && 'string_value' in cv) cv = { reference_value: cv.string_value };
    const c = V.compare(orderValue(doc, o), cv) * o.dir;
    if (c) return c;
  }
  return 0;
}

// ---------------------------------------------------------------------------
// Field transforms.

function addNumbers(a, b) {
  if ('integer_value' in a && 'integer_value' in b) {
    const r = a.integer_value + b.integer_value;
    // int64 overflow saturates in Firestore; beyond 2^53 we are approximate anyway.
    if (Number.isSafeInteger(r)) return { integer_value: r };
    return { integer_value: r > 0 ? Number.MAX_SAFE_INTEGER : Number.MIN_SAFE_INTEGER };
  }
  return { double_value: V.numberOf(a) + V.numberOf(b) };
}

function applyTransform(fields, t, commitTime) {
  const cur = V.getPath(fields, t.segs);
  let next;
  let result;
  switch (t.kind) {
    case 'set_to_server_value':
      next = { timestamp_value: { ...commitTime } };
      result = next;
      break;
    case 'increment':
      next = cur && V.isNumber(cur) ? addNumbers(cur, t.operand) : t.operand;
      result = next;
      break;
    case 'maximum':
    case 'minimum': {
      if (!cur || !V.isNumber(cur)) next = t.operand;
      else {
        const c = V.compare(t.operand, cur);
        next = (t.kind === 'maximum' ? c > 0 : c < 0) ? t.operand : cur;
      }
      result = next;
      break;
    }
    case 'append_missing_elements': {
      const values = cur && 'array_value' in cur ? cur.array_value.values.slice() : [];
      for (const e of t.elements) if (!V.arrayContains(values, e)) values.push(e);
      next = { array_value: { values } };
      result = V.NULL;
      break;
    }
    case 'remove_all_from_array': {
      const values = cur && 'array_value' in cur ? cur.array_value.values : [];
      next = { array_value: { values: values.filter((e) => !V.arrayContains(t.elements, e)) } };
      result = V.NULL;
      break;
    }
    default:
      throw new GrpcError(Code.INVALID_ARGUMENT, `unknown transform ${t.kind}`);
  }
  V.setPath(fields, t.segs, next);
  return result;
}

function fieldsEqual(a, b) {
  return V.equals({ map_value: { fields: a } }, { map_value: { fields: b } });
}

// ---------------------------------------------------------------------------

class Store {
  constructor() {
    this.docs = new Map(); // name -> {name, fields, createTime, updateTime}
    this.collections = new Map(); // collection path -> Map(name -> doc)
    this.lastMicros = 0;
    this.commitListeners = new Set();
  }

  /** Strictly increasing commit timestamps with microsecond precision. */
  nextTime() {
    // Date.now() only has millisecond resolution; timeOrigin + now() has µs.
    let us = Math.floor((performance.timeOrigin + performance.now()) * 1000);
    if (us <= this.lastMicros) us = this.lastMicros + 1;
    this.lastMicros = us;
    return { seconds: Math.floor(us / 1e6), nanos: (us % 1e6) * 1000 };
  }

  /** A read timestamp: never earlier than the latest commit. */
  now() {
    const us = Math.max(Math.floor((performance.timeOrigin + performance.now()) * 1000), this.lastMicros);
    return { seconds: Math.floor(us / 1e6), nanos: (us % 1e6) * 1000 };
  }

  get(name) {
    return this.docs.get(name);
  }

  versionOf(name) {
    const d = this.docs.get(name);
    return d ? tsKey(d.updateTime) : 'missing';
  }

  _put(name, doc) {
    const coll = parentOf(name);
    if (doc) {
      this.docs.set(name, doc);
      let m = this.collections.get(coll);
      if (!m) {
        m = new Map();
        this.collections.set(coll, m);
      }
      m.set(name, doc);
    } else if (this.docs.delete(name)) {
      const m = this.collections.get(coll);
      m.delete(name);
      if (m.size === 0) this.collections.delete(coll);
    }
  }

  _checkPrecondition(p, cur, name) {
    if (!p) return;
    if ('exists' in p) {
      if (p.exists && !cur) throw new GrpcError(Code.NOT_FOUND, `No document to update: ${name}`);
      if (!p.exists && cur) {
        throw new GrpcError(Code.ALREADY_EXISTS, `Document already exists: ${name}`);
      }
    } else if (p.updateTime) {
      if (!cur || tsKey(cur.updateTime) !== tsKey(p.updateTime)) {
        throw new GrpcError(
          Code.FAILED_PRECONDITION,
          `the stored version (${cur ? tsKey(cur.updateTime) : 'missing'}) does not match ` +
            `the required base version (${tsKey(p.updateTime)}) for ${name}`,
        );
      }
    }
  }

  /** Applies one write against `stage` (a name -> doc|null overlay). */
  _stageWrite(w, commitTime, stage) {
    const cur = stage.has(w.name) ? stage.get(w.name) : this.docs.get(w.name) || null;
    this._checkPrecondition(w.precondition, cur, w.name);
    if (w.op === 'delete') {
      stage.set(w.name, null);
      return { transform_results: [] };
    }
    let fields;
    if (w.op === 'update' && !w.mask) {
      // set() without merge replaces the whole document.
      fields = w.fields;
    } else {
      fields = cur ? V.cloneFields(cur.fields) : {};
      if (w.op === 'update') {
        for (const p of w.mask) {
          const segs = V.parseFieldPath(p);
          const v = V.getPath(w.fields, segs);
          if (v === undefined) V.deletePath(fields, segs);
          else V.setPath(fields, segs, v);
        }
      }
    }
    const results = w.transforms.map((t) => applyTransform(fields, t, commitTime));
    let updateTime = commitTime;
    // A write that changes nothing keeps the previous update_time (as Firestore does).
    if (cur && fieldsEqual(cur.fields, fields)) updateTime = cur.updateTime;
    const doc = {
      name: w.name,
      fields,
      createTime: cur ? cur.createTime : commitTime,
      updateTime,
    };
    stage.set(w.name, doc);
    return { update_time: updateTime, transform_results: results };
  }

  /**
   * Applies writes atomically (all or nothing).  `validate()` may veto the
   * commit by throwing; it runs before preconditions are checked so that a
   * transaction that read stale data is ABORTED (and retried by the client)
   * rather than failing a precondition its retry would have handled.
   */
  commit(writes, validate) {
    if (validate) validate();
    const commitTime = this.nextTime();
    const stage = new Map();
    const results = writes.map((w) => this._stageWrite(w, commitTime, stage));
    for (const [name, doc] of stage) this._put(name, doc);
    this._notify(stage, commitTime);
    return { commitTime, results };
  }

  /** Applies writes independently (BatchWrite): each one succeeds or fails alone. */
  batchWrite(writes) {
    const commitTime = this.nextTime();
    const changed = new Map();
    const out = writes.map((w) => {
      const stage = new Map();
      try {
        const result = this._stageWrite(w, commitTime, stage);
        for (const [name, doc] of stage) {
          this._put(name, doc);
          changed.set(name, doc);
        }
        return { result, status: { code: 0 } };
      } catch (err) {
        if (!(err instanceof GrpcError)) throw err;
        return { result: {}, status: { code: err.code, message: err.message } };
      }
    });
    this._notify(changed, commitTime);
    return { commitTime, out };
  }

  _notify(changed, commitTime) {
    if (changed.size) for (const l of this.commitListeners) l(changed, commitTime);
  }

  /** Removes every document under `prefix` (a database's documents root). */
  wipe(prefix) {
    const p = `${prefix}/`;
    const changed = new Map();
    for (const name of [...this.docs.keys()]) {
      if (name.startsWith(p)) {
        this._put(name, null);
        changed.set(name, null);
      }
    }
    this._notify(changed, this.nextTime());
    return changed.size;
  }

  // -------------------------------------------------------------------------
  // Queries

  _candidates(parent, from) {
    if (from.length !== 1) {
      throw new GrpcError(Code.INVALID_ARGUMENT, 'a query must select exactly one collection');
    }
    const { collectionId, allDescendants } = from[0];
    if (!allDescendants) {
      const m = this.collections.get(`${parent}/${collectionId}`);
      return m ? [...m.values()] : [];
    }
    const out = [];
    const prefix = `${parent}/`;
    for (const [path, m] of this.collections) {
      if (!path.startsWith(prefix)) continue;
      if (collectionId && lastSegment(path) !== collectionId) continue;
      for (const d of m.values()) out.push(d);
    }
    return out;
  }

  /** Runs a plain structured query; returns {docs, skipped}. */
  runQuery(parent, q) {
    const pred = compileFilter(q.where);
    const orders = effectiveOrder(q);
    let docs = this._candidates(parent, q.from).filter(
      (d) => pred(d) && orders.every((o) => orderValue(d, o) !== undefined),
    );
    docs.sort((a, b) => {
      for (const o of orders) {
        const c = V.compare(orderValue(a, o), orderValue(b, o)) * o.dir;
        if (c) return c;
      }
      return 0;
    });
    if (q.startAt) {
      const c = q.startAt;
      docs = docs.filter((d) => {
        const r = compareToCursor(d, orders, c);
        return r > 0 || (r === 0 && c.before);
      });
    }
    if (q.endAt) {
      const c = q.endAt;
      docs = docs.filter((d) => {
        const r = compareToCursor(d, orders, c);
        return r < 0 || (r === 0 && !c.before);
      });
    }
    const skipped = Math.min(q.offset, docs.length);
    if (q.offset) docs = docs.slice(q.offset);
    if (q.limit !== null && q.limit !== undefined) docs = docs.slice(0, q.limit);
    return { docs, skipped };
  }

  /** Direct sub-collection ids of a document (or the database root). */
  listCollectionIds(parent) {
    const prefix = `${parent}/`;
    const ids = new Set();
    for (const path of this.collections.keys()) {
      if (!path.startsWith(prefix)) continue;
      const rest = path.slice(prefix.length);
      const slash = rest.indexOf('/');
      ids.add(slash < 0 ? rest : rest.slice(0, slash));
    }
    return [...ids].sort(V.compareStrings);
  }

  /** Documents of a collection; with showMissing also the ids that only have sub-collections. */
  listDocuments(collPath, showMissing) {
    const out = new Map();
    const m = this.collections.get(collPath);
    if (m) for (const [name, d] of m) out.set(name, d);
    if (showMissing) {
      const prefix = `${collPath}/`;
      for (const path of this.collections.keys()) {
        if (!path.startsWith(prefix)) continue;
        const id = path.slice(prefix.length).split('/')[0];
        const name = prefix + id;
        if (!out.has(name)) out.set(name, { name, missing: true });
      }
    }
    return [...out.values()].sort((a, b) => V.compareReferences(a.name, b.name));
  }
}

/** Renders a stored document as a protobuf Document object (optionally masked). */
function docToObject(doc, maskPaths) {
  return {
    name: doc.name,
    fields: maskPaths ? V.project(doc.fields, maskPaths) : doc.fields,
    create_time: doc.createTime,
    update_time: doc.updateTime,
  };
}

module.exports = {
  Store,
  GrpcError,
  Code,
  writeFromPb,
  queryFromPb,
  compileFilter,
  docToObject,
  tsKey,
  parentOf,
};
