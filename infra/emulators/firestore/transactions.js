'use strict';
// Serialisable read-write transactions.
//
// The published package hands out one constant transaction id and never
// checks anything, so concurrent read-modify-write cycles lose updates.  Here
// every read a transaction makes (documents and query results) is recorded
// with the version it saw, and its commit is refused with ABORTED (which the
// client libraries retry) if any of those versions changed meanwhile.
//
// Optimistic validation alone can starve a transaction under contention (the
// Python client gives up after 5 attempts), so reads also act as shared locks
// with wound-wait priorities, like Firestore's pessimistic concurrency: a
// commit that would overwrite a document read by an *older* live transaction
// waits for it to finish instead of invalidating it, and a retried transaction
// (BeginTransaction.options.read_write.retry_transaction) keeps the priority
// of its first attempt, so it only gets older and eventually wins.

const crypto = require('node:crypto');
const { GrpcError, Code, tsKey } = require('./store');

// A transaction idle this long no longer blocks others (its client is gone)...
const LOCK_IDLE_MS = 30_000;
// ...and is forgotten entirely after this long.
const EXPIRE_MS = 270_000;
// A commit waits at most this long for older transactions before aborting.
const COMMIT_WAIT_MS = 10_000;

class TransactionManager {
  constructor(store) {
    this.store = store;
    this.active = new Map(); // hex id -> tx
    this.priorities = new Map(); // hex id -> priority, kept for retries
    this.seq = 0;
    this.waiters = new Set();
    this.sweeper = setInterval(() => this._sweep(), 10_000);
    this.sweeper.unref();
  }

  begin(options) {
    const id = crypto.randomBytes(16);
    const key = id.toString('hex');
    const readOnly = Boolean(options?.has_read_only);
    let priority = ++this.seq;
    if (options?.has_read_write && options.read_write.retry_transaction.length) {
      const prev = this.priorities.get(Buffer.from(options.read_write.retry_transaction).toString('hex'));
      if (prev !== undefined) priority = prev;
    }
    const tx = {
      id,
      key,
      readOnly,
      priority,
      reads: new Map(), // document name -> version seen
      queries: [], // {run: () => fingerprint, fingerprint}
      lastActive: Date.now(),
      startedAt: Date.now(),
    };
    this.active.set(key, tx);
    this.priorities.set(key, priority);
    return tx;
  }

  /** Resolves the transaction bytes of a request; unknown ids are ABORTED so clients retry. */
  get(idBytes) {
    const key = Buffer.from(idBytes).toString('hex');
    const tx = this.active.get(key);
    if (!tx) {
      throw new GrpcError(Code.ABORTED, `transaction ${key} is not active (expired or finished)`);
    }
    tx.lastActive = Date.now();
    return tx;
  }

  recordRead(tx, name) {
    if (tx.readOnly || tx.reads.has(name)) return;
    tx.reads.set(name, this.store.versionOf(name));
  }

  /** Records a query's result set; `rerun` recomputes it at commit time (phantom check). */
  recordQuery(tx, docs, rerun) {
    if (tx.readOnly) return;
    for (const d of docs) this.recordRead(tx, d.name);
    tx.queries.push({ fingerprint: fingerprint(docs), rerun });
  }

  rollback(idBytes) {
    const key = Buffer.from(idBytes).toString('hex');
    this._finish(key);
  }

  _finish(key) {
    if (this.active.delete(key)) for (const w of this.waiters) w();
  }

  _blockers(tx, names) {
    const now = Date.now();
    const out = [];
    for (const u of this.active.values()) {
      if (u === tx || u.readOnly || u.priority >= tx.priority) continue;
      if (now - u.lastActive > LOCK_IDLE_MS) continue;
      for (const n of names) {
        if (u.reads.has(n)) {
          out.push(u);
          break;
        }
      }
    }
    return out;
  }

  _waitForChange(ms) {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.waiters.add(done);
    });
  }

  /** Commits `writes` inside transaction `idBytes`; resolves to the store's commit result. */
  async commit(idBytes, writes) {
    const tx = this.get(idBytes);
    try {
      if (tx.readOnly && writes.length) {
        throw new GrpcError(Code.INVALID_ARGUMENT, 'cannot write in a read-only transaction');
      }
      const names = new Set(writes.map((w) => w.name));
      const deadline = Date.now() + COMMIT_WAIT_MS;
      while (this._blockers(tx, names).length) {
        if (Date.now() > deadline) {
          throw new GrpcError(Code.ABORTED, 'transaction lock timeout: contention with an older transaction');
        }
        tx.lastActive = Date.now();
        await this._waitForChange(250);
      }
      if (!this.active.has(tx.key)) {
        throw new GrpcError(Code.ABORTED, 'transaction expired while waiting for a lock');
      }
      // Validation and application run in one synchronous step: nothing can interleave.
      return this.store.commit(writes, () => this._validate(tx));
    } finally {
      this._finish(tx.key);
    }
  }

  _validate(tx) {
    for (const [name, seen] of tx.reads) {
      if (this.store.versionOf(name) !== seen) {
        throw new GrpcError(
          Code.ABORTED,
          `transaction aborted: ${name} was modified after it was read (contention)`,
        );
      }
    }
    for (const q of tx.queries) {
      if (fingerprint(q.rerun()) !== q.fingerprint) {
        throw new GrpcError(Code.ABORTED, 'transaction aborted: a query result changed after it was read');
      }
    }
  }

  _sweep() {
    const now = Date.now();
    for (const [key, tx] of this.active) if (now - tx.lastActive > EXPIRE_MS) this._finish(key);
    if (this.priorities.size > 100_000) {
      // Keep the newest half; an ancient retry id just gets a fresh priority.
      const keys = [...this.priorities.keys()];
      for (const k of keys.slice(0, keys.length / 2)) this.priorities.delete(k);
    }
  }

  close() {
    clearInterval(this.sweeper);
  }
}

function fingerprint(docs) {
  return docs.map((d) => `${d.name}@${tsKey(d.updateTime)}`).join('|');
}

module.exports = { TransactionManager };
