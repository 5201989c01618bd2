'use strict';
// Direct protobuf wire decoding of CommitRequest and BatchWriteRequest into
// the store's plain write objects.
//
// Bulk loads are dominated by request decoding: the generated google-protobuf
// classes build a message object per Value and then need slow getters to read
// them back (about half the server time of a 500-write commit).  Decoding the
// few message types a write can contain straight from the bytes is several
// times faster.  Field numbers are from google/firestore/v1/{firestore,write,
// document,common}.proto; unknown fields are skipped, as protobuf requires.

const { GrpcError, Code } = require('./store');
const V = require('./values');

class Reader {
  constructor(buf, pos = 0, end = buf.length) {
    this.buf = buf;
    this.pos = pos;
    this.end = end;
  }

  more() {
    return this.pos < this.end;
  }

  varint() {
    // Fast path for values below 2^28, the overwhelmingly common case.
    const b = this.buf;
    let x = 0;
    let shift = 0;
    for (let i = 0; i < 4; i++) {
      const byte = b[this.pos++];
      x |= (byte & 0x7f) << shift;
      if (byte < 0x80) return x >>> 0;
      shift += 7;
    }
    // Slow path: full 64-bit, two's complement for negative int64.
    let big = BigInt(x >>> 0);
    let s = 28n;
    for (;;) {
      if (this.pos >= this.end) throw new GrpcError(Code.INVALID_ARGUMENT, 'truncated varint');
      const byte = b[this.pos++];
      big |= BigInt(byte & 0x7f) << s;
      if (byte < 0x80) break;
      s += 7n;
    }
    return big;
  }

  int64() {
    const v = this.varint();
    return typeof v === 'bigint' ? Number(BigInt.asIntN(64, v)) : v;
  }

  int32() {
    const v = this.varint();
    return typeof v === 'bigint' ? Number(BigInt.asIntN(32, v)) : v | 0;
  }

  double() {
    const v = this.buf.readDoubleLE(this.pos);
    this.pos += 8;
    return v;
  }

  /** Returns a Reader over a length-delimited field. */
  /** Consumes a length prefix and returns the [start, end) of the payload. */
  span() {
    const start = this.pos;
    const len = Number(this.varint());
    const from = this.pos;
    this.pos += len;
    if (this.pos > this.end) {
      this.pos = start;
      throw new GrpcError(Code.INVALID_ARGUMENT, 'truncated message');
    }
    return [from, this.pos];
  }

  sub() {
    const [from, to] = this.span();
    return new Reader(this.buf, from, to);
  }

  string() {
    const [from, to] = this.span();
    return this.buf.toString('utf8', from, to);
  }

  bytes() {
    const [from, to] = this.span();
    return Uint8Array.prototype.slice.call(this.buf, from, to);
  }

  skip(wireType) {
    switch (wireType) {
      case 0:
        this.varint();
        break;
      case 1:
        this.pos += 8;
        break;
      case 2:
        this.span();
        break;
      case 5:
        this.pos += 4;
        break;
      default:
        throw new GrpcError(Code.INVALID_ARGUMENT, `unsupported wire type ${wireType}`);
    }
  }

  /** Iterates (fieldNumber, wireType) tags; the callback must consume the value. */
  each(fn) {
    while (this.pos < this.end) {
      const tag = this.varint();
      fn(tag >>> 3, tag & 7);
    }
    // Fixed-size and varint reads are not bounds-checked one by one.
    if (this.pos > this.end) throw new GrpcError(Code.INVALID_ARGUMENT, 'truncated message');
  }
}

function timestamp(r) {
  const t = { seconds: 0, nanos: 0 };
  r.each((f, w) => {
    if (f === 1) t.seconds = r.int64();
    else if (f === 2) t.nanos = r.int32();
    else r.skip(w);
  });
  return t;
}

function arrayValue(r) {
  const values = [];
  r.each((f, w) => {
    if (f === 1) values.push(value(r.sub()));
    else r.skip(w);
  });
  return values;
}

/** Decodes map<string, Value> entries into `out`. */
function mapEntry(r, out) {
  let key = '';
  let val = V.NULL;
  r.each((f, w) => {
    if (f === 1) key = r.string();
    else if (f === 2) val = value(r.sub());
    else r.skip(w);
  });
  out[key] = val;
}

function value(r) {
  let v = { null_value: 0 }; // an empty Value is null
  r.each((f, w) => {
    switch (f) {
      case 11:
        r.varint();
        v = { null_value: 0 };
        break;
      case 1:
        v = { boolean_value: r.varint() !== 0 };
        break;
      case 2:
        v = { integer_value: r.int64() };
        break;
      case 3:
        v = { double_value: r.double() };
        break;
      case 10:
        v = { timestamp_value: timestamp(r.sub()) };
        break;
      case 17:
        v = { string_value: r.string() };
        break;
      case 18:
        v = { bytes_value: r.bytes() };
        break;
      case 5:
        v = { reference_value: r.string() };
        break;
      case 8: {
        const g = { latitude: 0, longitude: 0 };
        const s = r.sub();
        s.each((gf, gw) => {
          if (gf === 1) g.latitude = s.double();
          else if (gf === 2) g.longitude = s.double();
          else s.skip(gw);
        });
        v = { geo_point_value: g };
        break;
      }
      case 9:
        v = { array_value: { values: arrayValue(r.sub()) } };
        break;
      case 6: {
        const fields = {};
        const s = r.sub();
        s.each((mf, mw) => {
          if (mf === 1) mapEntry(s.sub(), fields);
          else s.skip(mw);
        });
        v = { map_value: { fields } };
        break;
      }
      default:
        r.skip(w);
    }
  });
  return v;
}

function document(r) {
  const d = { name: '', fields: {} };
  r.each((f, w) => {
    if (f === 1) d.name = r.string();
    else if (f === 2) mapEntry(r.sub(), d.fields);
    else r.skip(w);
  });
  return d;
}

function precondition(r) {
  let p = null;
  r.each((f, w) => {
    if (f === 1) p = { exists: r.varint() !== 0 };
    else if (f === 2) p = { updateTime: timestamp(r.sub()) };
    else r.skip(w);
  });
  return p;
}

const REQUEST_TIME = 1;

function fieldTransform(r) {
  let path = '';
  let t = null;
  r.each((f, w) => {
    switch (f) {
      case 1:
        path = r.string();
        break;
      case 2:
        if (r.varint() !== REQUEST_TIME) {
          throw new GrpcError(Code.INVALID_ARGUMENT, 'unsupported server value');
        }
        t = { kind: 'set_to_server_value' };
        break;
      case 3:
      case 4:
      case 5: {
        const kind = f === 3 ? 'increment' : f === 4 ? 'maximum' : 'minimum';
        const operand = value(r.sub());
        if (!V.isNumber(operand)) {
          throw new GrpcError(Code.INVALID_ARGUMENT, `${kind} operand must be a number`);
        }
        t = { kind, operand };
        break;
      }
      case 6:
        t = { kind: 'append_missing_elements', elements: arrayValue(r.sub()) };
        break;
      case 7:
        t = { kind: 'remove_all_from_array', elements: arrayValue(r.sub()) };
        break;
      default:
        r.skip(w);
    }
  });
  if (!t) throw new GrpcError(Code.INVALID_ARGUMENT, `invalid field transform on ${path}`);
  t.segs = V.parseFieldPath(path);
  return t;
}

function write(r) {
  let op = null;
  let name = '';
  let fields = null;
  let mask = null;
  let precond = null;
  const transforms = [];
  r.each((f, w) => {
    switch (f) {
      case 1: {
        const d = document(r.sub());
        op = 'update';
        name = d.name;
        fields = d.fields;
        break;
      }
      case 2:
        op = 'delete';
        name = r.string();
        break;
      case 6: {
        op = 'transform';
        const s = r.sub();
        s.each((tf, tw) => {
          if (tf === 1) name = s.string();
          else if (tf === 2) transforms.push(fieldTransform(s.sub()));
          else s.skip(tw);
        });
        break;
      }
      case 3: {
        mask = [];
        const s = r.sub();
        s.each((mf, mw) => {
          if (mf === 1) mask.push(s.string());
          else s.skip(mw);
        });
        break;
      }
      case 7:
        transforms.push(fieldTransform(r.sub()));
        break;
      case 4:
        precond = precondition(r.sub());
        break;
      default:
        r.skip(w);
    }
  });
  if (!op) throw new GrpcError(Code.INVALID_ARGUMENT, 'write has no operation');
  if (op === 'delete') return { op, name, precondition: precond };
  if (op === 'transform') return { op, name, transforms, precondition: precond };
  return { op, name, fields, mask, transforms, precondition: precond };
}

/** Decodes CommitRequest / BatchWriteRequest: {database, writes, transaction}. */
function decodeWritesRequest(buf) {
  const r = new Reader(buf);
  const req = { database: '', writes: [], transaction: Buffer.alloc(0) };
  r.each((f, w) => {
    if (f === 1) req.database = r.string();
    else if (f === 2) req.writes.push(write(r.sub()));
    else if (f === 3 && w === 2) {
      // CommitRequest.transaction (bytes); in BatchWriteRequest field 3 is labels.
      req.transaction = r.bytes();
    } else r.skip(w);
  });
  return req;
}

module.exports = { decodeWritesRequest };
