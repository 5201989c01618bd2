'use strict';
// gRPC handlers for google.firestore.v1.Firestore.
//
// We keep the package's service definition and generated protobuf classes
// (wire format, method table) and replace every handler: the published ones
// are either missing (GetDocument, ListDocuments, BatchWrite, ...) or sit on
// top of FirestoreState, whose semantics are wrong in the ways listed in
// launcher.js.

const crypto = require('node:crypto');
const FS = require('@firestore-emulator/proto/dist/google/firestore/v1/firestore');
const { Document } = require('@firestore-emulator/proto/dist/google/firestore/v1/document');
const { Empty } = require('@firestore-emulator/proto/dist/google/protobuf/empty');
const {
  Store,
  GrpcError,
  Code,
  writeFromPb,
  queryFromPb,
  compileFilter,
  docToObject,
  parentOf,
} = require('./store');
const { TransactionManager } = require('./transactions');
const V = require('./values');
const { decodeWritesRequest } = require('./wire');

const TargetChange = { NO_CHANGE: 0, ADD: 1, REMOVE: 2, CURRENT: 3 };

function toStatus(err) {
  if (err instanceof GrpcError) return { code: err.code, details: err.message };
  console.error('[firestore-emulator] internal error:', err);
  return { code: Code.INTERNAL, details: String(err?.stack || err) };
}

/** Wraps a (possibly async) unary handler: returned message or thrown GrpcError. */
function unary(fn) {
  return (call, callback) => {
    Promise.resolve()
      .then(() => fn(call.request, call))
      .then(
        (res) => callback(null, res),
        (err) => callback(toStatus(err), null),
      );
  };
}

/** Wraps a server-streaming handler that returns an array of response messages. */
function serverStream(fn) {
  return (call) => {
    Promise.resolve()
      .then(() => fn(call.request, call))
      .then(
        (msgs) => {
          for (const m of msgs) call.write(m);
          call.end();
        },
        (err) => call.emit('error', toStatus(err)),
      );
  };
}

function maskOf(req) {
  return req.has_mask ? req.mask.field_paths : null;
}

function randomId() {
  const chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  const bytes = crypto.randomBytes(20);
  let s = '';
  for (const b of bytes) s += chars[b % chars.length];
  return s;
}

function aggregate(agg, docs) {
  switch (agg.operator) {
    case 'count': {
      let n = docs.length;
      if (agg.count.has_up_to) n = Math.min(n, agg.count.up_to.value);
      return { integer_value: n };
    }
    case 'sum':
    case 'avg': {
      const segs = V.parseFieldPath(agg[agg.operator].field.field_path);
      let sum = { integer_value: 0 };
      let n = 0;
      for (const d of docs) {
        const v = V.getPath(d.fields, segs);
        if (!v || !V.isNumber(v)) continue;
        n++;
        const r = V.numberOf(sum) + V.numberOf(v);
        sum =
          'integer_value' in sum && 'integer_value' in v && Number.isSafeInteger(r)
            ? { integer_value: r }
            : { double_value: r };
      }
      if (agg.operator === 'sum') return sum;
      return n ? { double_value: V.numberOf(sum) / n } : V.NULL;
    }
    default:
      throw new GrpcError(Code.INVALID_ARGUMENT, 'unsupported aggregation');
  }
}

class FirestoreService {
  constructor() {
    this.store = new Store();
    this.tx = new TransactionManager(this.store);
  }

  /** Handles the transaction / new_transaction consistency selectors of a read. */
  _readTx(req) {
    if (req.consistency_selector === 'transaction') return { tx: this.tx.get(req.transaction) };
    if (req.consistency_selector === 'new_transaction') {
      return { tx: this.tx.begin(req.new_transaction), isNew: true };
    }
    return { tx: null };
  }

  _query(parent, sq, tx) {
    if (!sq) throw new GrpcError(Code.INVALID_ARGUMENT, 'a structured query is required');
    const q = queryFromPb(sq);
    const { docs, skipped } = this.store.runQuery(parent, q);
    if (tx) this.tx.recordQuery(tx, docs, () => this.store.runQuery(parent, q).docs);
    return { q, docs, skipped };
  }

  handlers() {
    const h = {
      GetDocument: unary((req) => {
        const { tx } = this._readTx(req);
        if (tx) this.tx.recordRead(tx, req.name);
        const doc = this.store.get(req.name);
        if (!doc) throw new GrpcError(Code.NOT_FOUND, `Document ${req.name} not found`);
        return Document.fromObject(docToObject(doc, maskOf(req)));
      }),

      BatchGetDocuments: serverStream((req) => {
        const { tx, isNew } = this._readTx(req);
        const readTime = this.store.now();
        const mask = maskOf(req);
        const out = req.documents.map((name, i) => {
          if (tx) this.tx.recordRead(tx, name);
          const doc = this.store.get(name);
          const msg = { read_time: readTime };
          if (doc) msg.found = docToObject(doc, mask);
          else msg.missing = name;
          if (isNew && i === 0) msg.transaction = tx.id;
          return FS.BatchGetDocumentsResponse.fromObject(msg);
        });
        if (isNew && out.length === 0) {
          out.push(FS.BatchGetDocumentsResponse.fromObject({ transaction: tx.id, read_time: readTime }));
        }
        return out;
      }),

      BeginTransaction: unary((req) => {
        const tx = this.tx.begin(req.has_options ? req.options : null);
        return FS.BeginTransactionResponse.fromObject({ transaction: tx.id });
      }),

      // Commit and BatchWrite requests arrive pre-decoded by wire.js.
      Commit: unary(async (req) => {
        const { writes } = req;
        const { commitTime, results } = req.transaction.length
          ? await this.tx.commit(req.transaction, writes)
          : this.store.commit(writes);
        return FS.CommitResponse.fromObject({ commit_time: commitTime, write_results: results });
      }),

      Rollback: unary((req) => {
        this.tx.rollback(req.transaction);
        return Empty.fromObject({});
      }),

      RunQuery: serverStream((req) => {
        const { tx, isNew } = this._readTx(req);
        const sq = req.has_structured_query ? req.structured_query : null;
        const { q, docs, skipped } = this._query(req.parent, sq, tx);
        const readTime = this.store.now();
        const out = docs.map((d) => ({ document: docToObject(d, q.select), read_time: readTime }));
        if (out.length === 0) out.push({ read_time: readTime });
        out[0].skipped_results = skipped;
        if (isNew) out[0].transaction = tx.id;
        out[out.length - 1].done = true;
        return out.map((m) => FS.RunQueryResponse.fromObject(m));
      }),

      RunAggregationQuery: serverStream((req) => {
        if (req.has_explain_options) {
          throw new GrpcError(Code.UNIMPLEMENTED, 'query explain is not supported by the emulator');
        }
        const { tx, isNew } = this._readTx(req);
        const saq = req.structured_aggregation_query;
        const sq = saq.has_structured_query ? saq.structured_query : null;
        const { docs } = this._query(req.parent, sq, tx);
        const fields = {};
        for (const agg of saq.aggregations) fields[agg.alias] = aggregate(agg, docs);
        const msg = { result: { aggregate_fields: fields }, read_time: this.store.now() };
        if (isNew) msg.transaction = tx.id;
        return [FS.RunAggregationQueryResponse.fromObject(msg)];
      }),

      ListDocuments: unary((req) => {
        const { tx } = this._readTx(req);
        const collPath = `${req.parent}/${req.collection_id}`;
        let docs = this.store.listDocuments(collPath, req.show_missing);
        if (req.page_token) docs = docs.filter((d) => V.compareReferences(d.name, req.page_token) > 0);
        let next = '';
        if (req.page_size > 0 && docs.length > req.page_size) {
          docs = docs.slice(0, req.page_size);
          next = docs[docs.length - 1].name;
        }
        const mask = maskOf(req);
        return FS.ListDocumentsResponse.fromObject({
          documents: docs.map((d) => {
            if (tx) this.tx.recordRead(tx, d.name);
            return d.missing ? { name: d.name } : docToObject(d, mask);
          }),
          next_page_token: next,
        });
      }),

      ListCollectionIds: unary((req) => {
        let ids = this.store.listCollectionIds(req.parent);
        if (req.page_token) ids = ids.filter((id) => V.compareStrings(id, req.page_token) > 0);
        let next = '';
        if (req.page_size > 0 && ids.length > req.page_size) {
          ids = ids.slice(0, req.page_size);
          next = ids[ids.length - 1];
        }
        return FS.ListCollectionIdsResponse.fromObject({ collection_ids: ids, next_page_token: next });
      }),

      BatchWrite: unary((req) => {
        const { out } = this.store.batchWrite(req.writes);
        return FS.BatchWriteResponse.fromObject({
          write_results: out.map((o) => o.result),
          status: out.map((o) => o.status),
        });
      }),

      CreateDocument: unary((req) => {
        const name = `${req.parent}/${req.collection_id}/${req.document_id || randomId()}`;
        const fields = V.fieldsFromPb(req.document.fields);
        this.store.commit([
          { op: 'update', name, fields, mask: null, transforms: [], precondition: { exists: false } },
        ]);
        return Document.fromObject(docToObject(this.store.get(name), maskOf(req)));
      }),

      UpdateDocument: unary((req) => {
        const w = writeFromPb(
          // Reuse the Write conversion: an UpdateDocument is an update Write.
          {
            operation: 'update',
            update: req.document,
            has_update_mask: req.has_update_mask,
            update_mask: req.update_mask,
            update_transforms: [],
            has_current_document: req.has_current_document,
            current_document: req.current_document,
          },
        );
        this.store.commit([w]);
        return Document.fromObject(docToObject(this.store.get(w.name), maskOf(req)));
      }),

      DeleteDocument: unary((req) => {
        const w = writeFromPb({
          operation: 'delete',
          delete: req.name,
          has_current_document: req.has_current_document,
          current_document: req.current_document,
        });
        this.store.commit([w]);
        return Empty.fromObject({});
      }),

      PartitionQuery: unary(() => {
        // A single partition (no cursors) covers the whole query.
        return FS.PartitionQueryResponse.fromObject({ partitions: [], next_page_token: '' });
      }),

      Write: (call) => {
        call.emit('error', { code: Code.UNIMPLEMENTED, details: 'Write streams are not supported; use Commit' });
      },

      Listen: (call) => this._listen(call),
    };
    return h;
  }

  // -------------------------------------------------------------------------
  // Listen: a simple but consistent watch implementation.  After each commit
  // touching a target we send the document changes followed by a global
  // NO_CHANGE carrying the commit's read_time, which is what the clients use
  // to emit a snapshot.

  _listen(call) {
    const targets = new Map();
    const send = (obj) => call.write(FS.ListenResponse.fromObject(obj));
    const resume = (ts) => Buffer.from(`${ts.seconds}.${ts.nanos}`);
    const snapshotOf = (t) => {
      if (t.kind === 'docs') {
        return t.names.map((n) => this.store.get(n)).filter(Boolean);
      }
      return this.store.runQuery(t.parent, t.q).docs;
    };
    const sendDiff = (id, t, docs) => {
      const next = new Map(docs.map((d) => [d.name, d]));
      let sent = false;
      for (const [name, d] of next) {
        const prev = t.current.get(name);
        if (prev !== d) {
          send({ document_change: { document: docToObject(d), target_ids: [id] } });
          sent = true;
        }
      }
      for (const name of t.current.keys()) {
        if (!next.has(name)) {
          const gone = !this.store.get(name);
          send(
            gone
              ? { document_delete: { document: name, removed_target_ids: [id] } }
              : { document_remove: { document: name, removed_target_ids: [id] } },
          );
          sent = true;
        }
      }
      t.current = next;
      return sent;
    };
    const inScope = (t, name) => {
      if (t.kind === 'docs') return t.names.includes(name);
      const coll = parentOf(name);
      const { collectionId, allDescendants } = t.q.from[0] || {};
      if (!allDescendants) return coll === `${t.parent}/${collectionId}`;
      return coll.startsWith(`${t.parent}/`) && (!collectionId || coll.endsWith(`/${collectionId}`));
    };
    const onCommit = (changed, commitTime) => {
      let any = false;
      for (const [id, t] of targets) {
        let touched = false;
        for (const name of changed.keys()) if (inScope(t, name)) touched = true;
        if (touched && sendDiff(id, t, snapshotOf(t))) any = true;
      }
      if (any) {
        send({
          target_change: {
            target_change_type: TargetChange.NO_CHANGE,
            target_ids: [],
            read_time: commitTime,
            resume_token: resume(commitTime),
          },
        });
      }
    };
    this.store.commitListeners.add(onCommit);
    const close = () => {
      this.store.commitListeners.delete(onCommit);
    };
    call.on('data', (req) => {
      try {
        if (req.has_add_target) {
          const at = req.add_target;
          const id = at.target_id;
          const t = { current: new Map() };
          if (at.has_documents) Object.assign(t, { kind: 'docs', names: at.documents.documents.slice() });
          else if (at.has_query) {
            const q = queryFromPb(at.query.structured_query);
            compileFilter(q.where); // validate early
            Object.assign(t, { kind: 'query', parent: at.query.parent, q });
          } else throw new GrpcError(Code.INVALID_ARGUMENT, 'target has neither documents nor query');
          targets.set(id, t);
          const readTime = this.store.now();
          send({ target_change: { target_change_type: TargetChange.ADD, target_ids: [id] } });
          sendDiff(id, t, snapshotOf(t));
          send({
            target_change: {
              target_change_type: TargetChange.CURRENT,
              target_ids: [id],
              read_time: readTime,
              resume_token: resume(readTime),
            },
          });
          send({
            target_change: {
              target_change_type: TargetChange.NO_CHANGE,
              target_ids: [],
              read_time: readTime,
              resume_token: resume(readTime),
            },
          });
        } else if (req.has_remove_target) {
          targets.delete(req.remove_target);
          send({
            target_change: { target_change_type: TargetChange.REMOVE, target_ids: [req.remove_target] },
          });
        }
      } catch (err) {
        close();
        call.emit('error', toStatus(err));
      }
    });
    call.on('end', () => {
      close();
      call.end();
    });
    call.on('cancelled', close);
    call.on('error', close);
  }

  close() {
    this.tx.close();
  }
}

// The package's service definition, with the fast request decoder for the
// two write-heavy methods.
const base = FS.UnimplementedFirestoreService.definition;
const definition = {
  ...base,
  Commit: { ...base.Commit, requestDeserialize: decodeWritesRequest },
  BatchWrite: { ...base.BatchWrite, requestDeserialize: decodeWritesRequest },
};

module.exports = { FirestoreService, definition };
