#!/usr/bin/env node
'use strict';
// Freshet's offline Firestore emulator.
//
//   node launcher.js --host 127.0.0.1 --port 8080 [--unpatched]
//
// The official emulator JAR is not available offline, so we build on the npm
// package @firestore-emulator/server@0.3.15.  As published it is wrong in ways
// that fail silently (see docs and tests/emulator/test_firestore_conformance.py):
//   1. set() without merge keeps old fields and ignores DELETE_FIELD;
//   2. transforms after an array/server-timestamp transform are dropped,
//      ArrayUnion on a missing field fails, nested field paths fail;
//   3. collection-group queries only see the top-level collection;
//   4. cursors, offset and select() are ignored;
//   5. where(x == None) (an IS_NULL unary filter) matches everything;
//   6. ListDocuments, ListCollectionIds and BatchWrite are missing;
//   7. transactions are not isolated (lost updates);
//   8. update_time preconditions are ignored;
//   9. there is no endpoint to wipe the data;
//  10. writes slow down quadratically with the number of documents.
// Its document state (FirestoreState) is the root of most of these, so the
// patched server keeps the package's gRPC service definition and generated
// protobuf classes and replaces the handlers and the state (service.js,
// store.js, transactions.js, values.js).  `--unpatched` runs the package's own
// server untouched so the conformance tests can prove each defect is real.
//
// Like the official emulator, one port serves both gRPC (HTTP/2) and a small
// HTTP/1.1 API: `DELETE /emulator/v1/projects/{p}/databases/{db}/documents`
// wipes a database and `GET /` answers "Ok".  Prints `READY host:port` once
// listening (port 0 picks a free port), and exits on SIGTERM/SIGINT or when
// stdin closes so a crashed parent never leaves an orphan behind.

const net = require('node:net');
const http = require('node:http');
const grpc = require('@grpc/grpc-js');

function parseArgs(argv) {
  const opts = { host: '127.0.0.1', port: 8080, unpatched: false, watchStdin: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) fail(`missing value for ${a}`);
      return argv[++i];
    };
    if (a === '--host') opts.host = value();
    else if (a === '--port') opts.port = Number(value());
    else if (a.startsWith('--host=')) opts.host = a.slice(7);
    else if (a.startsWith('--port=')) opts.port = Number(a.slice(7));
    else if (a === '--unpatched') opts.unpatched = true;
    else if (a === '--no-stdin-watch') opts.watchStdin = false;
    else if (a === '-h' || a === '--help') {
      process.stdout.write('usage: launcher.js [--host H] [--port P] [--unpatched] [--no-stdin-watch]\n');
      process.exit(0);
    } else fail(`unknown argument ${a}`);
  }
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) fail('invalid --port');
  return opts;
}

function fail(msg) {
  process.stderr.write(`launcher: ${msg}\n`);
  process.exit(2);
}

function formatHostPort(host, port) {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Installs shutdown hooks: signals, and (optionally) the parent closing our stdin. */
function onShutdown(opts, stop) {
  let stopping = false;
  const shutdown = () => {
    if (stopping) return;
    stopping = true;
    Promise.resolve()
      .then(stop)
      .catch(() => {})
      .finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  process.on('SIGHUP', shutdown);
  if (opts.watchStdin && !process.stdin.isTTY) {
    process.stdin.on('end', shutdown);
    process.stdin.on('error', shutdown);
    process.stdin.on('close', shutdown);
    process.stdin.resume();
  }
}

// ---------------------------------------------------------------------------

function startUnpatched(opts) {
  const { FirestoreServer } = require('@firestore-emulator/server');
  const server = new FirestoreServer();
  // FirestoreServer.start() binds 0.0.0.0; use its gRPC server directly so we
  // honour --host.  The handlers and state stay exactly as published.
  server.server.bindAsync(
    formatHostPort(opts.host, opts.port),
    grpc.ServerCredentials.createInsecure(),
    (err, port) => {
      if (err) fail(`cannot listen on ${opts.host}:${opts.port}: ${err.message}`);
      process.stdout.write(`READY ${formatHostPort(opts.host, port)}\n`);
    },
  );
  onShutdown(opts, () => server.stop());
}

function startPatched(opts) {
  const { FirestoreService, definition } = require('./service');
  const service = new FirestoreService();
  const grpcServer = new grpc.Server({
    'grpc.max_receive_message_length': 64 * 1024 * 1024,
    'grpc.max_send_message_length': 64 * 1024 * 1024,
  });
  grpcServer.addService(definition, service.handlers());
  const injector = grpcServer.createConnectionInjector(grpc.ServerCredentials.createInsecure());

  const httpServer = http.createServer((req, res) => handleHttp(service, req, res));
  httpServer.keepAliveTimeout = 5000;

  const sockets = new Set();
  // Sniff each connection: an HTTP/2 client preface goes to gRPC, anything
  // else is HTTP/1.1.  The sniffed bytes are pushed back before handing over.
  const PREFACE = Buffer.from('PRI * HTTP/2.0');
  const front = net.createServer((socket) => {
    sockets.add(socket);
    socket.setNoDelay(true);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    let buf = Buffer.alloc(0);
    const onData = (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      const n = Math.min(buf.length, PREFACE.length);
      const isH2 = buf.subarray(0, n).equals(PREFACE.subarray(0, n));
      if (isH2 && buf.length < PREFACE.length) return; // need more bytes to decide
      socket.removeListener('data', onData);
      socket.pause();
      socket.unshift(buf);
      if (isH2) {
        // Node's HTTP/2 session drains the socket's already-buffered bytes
        // when it takes the socket over; do not resume() here, that would
        // flush them to a 'data' event nobody listens to any more.
        injector.injectConnection(socket);
      } else {
        httpServer.emit('connection', socket);
        socket.resume();
      }
    };
    socket.on('data', onData);
  });
  front.on('error', (err) => fail(`cannot listen on ${opts.host}:${opts.port}: ${err.message}`));
  front.listen({ host: opts.host, port: opts.port, exclusive: true }, () => {
    const { port } = front.address();
    process.stdout.write(`READY ${formatHostPort(opts.host, port)}\n`);
  });

  onShutdown(opts, () => {
    front.close();
    for (const s of sockets) s.destroy();
    injector.destroy();
    grpcServer.forceShutdown();
    service.close();
  });
}

const WIPE_RE = /^\/emulator\/v1\/projects\/([^/]+)\/databases\/([^/]+)\/documents\/?$/;

function handleHttp(service, req, res) {
  const url = new URL(req.url, 'http://emulator');
  const path = decodeURIComponent(url.pathname);
  const reply = (code, body, type = 'application/json') => {
    res.writeHead(code, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };
  req.resume(); // discard any body
  if (req.method === 'GET' && path === '/') return reply(200, 'Ok\n', 'text/plain');
  const m = WIPE_RE.exec(path);
  if (m && req.method === 'DELETE') {
    const removed = service.store.wipe(`projects/${m[1]}/databases/${m[2]}/documents`);
    res.setHeader('x-documents-removed', String(removed));
    return reply(200, '{}\n');
  }
  return reply(404, JSON.stringify({ error: `no route for ${req.method} ${path}` }) + '\n');
}

// ---------------------------------------------------------------------------

const opts = parseArgs(process.argv.slice(2));
if (opts.unpatched) startUnpatched(opts);
else startPatched(opts);
