// A real CDN (nginx with proxy_cache, set up by .ci/cdn.sh) in front of
// commerce-graph: a persisted GET is kept for as long as the server's
// Cache-Control says and served without reaching the server; personal and
// authenticated answers are never kept; a price change is served once the
// entry expires; expired entries are revalidated with the ETag.
//
// Which requests reached the server is read from its log: every request is
// sent with its own x-request-id, and the server logs the start of each
// request with that id (COMMERCE_GRAPH_LOG=info,tower_http=debug).
//
// COMMERCE_GRAPH_CDN_URL: nginx, in front of the server.
// COMMERCE_GRAPH_URL: the server itself (to read ids the tests need).
// COMMERCE_GRAPH_BIN: its binary, to mint tokens (with the server's
//   COMMERCE_GRAPH_JWT_SECRET).
// COMMERCE_GRAPH_SERVER_LOG: the server's log file.
// COMMERCE_GRAPH_MAX_CACHE_AGE: the server's max-age cap, in seconds.

import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';

const cdn = process.env.COMMERCE_GRAPH_CDN_URL;
const origin = process.env.COMMERCE_GRAPH_URL;
const bin = process.env.COMMERCE_GRAPH_BIN;
const serverLog = process.env.COMMERCE_GRAPH_SERVER_LOG;
const maxAge = Number(process.env.COMMERCE_GRAPH_MAX_CACHE_AGE);

const workloads = readFileSync(new URL('../../persisted-queries/workloads.json', import.meta.url), 'utf8');
const documentIds = Object.fromEntries(JSON.parse(workloads).operations.map((op) => [op.name, op.id]));

let adminToken;
let customerToken;

function token(...args) {
  return execFileSync(bin, ['token', ...args], { encoding: 'utf8' }).trim();
}

const run = randomBytes(3).toString('hex');
let sent = 0;
/// A request id of this run, unique per request.
const nextRequestId = () => `cdn-${run}-${++sent}`;

/// Sends one request through the CDN with its own x-request-id.
async function throughCdn(path, { method = 'GET', headers = {}, body, bearer } = {}) {
  const requestId = nextRequestId();
  // `x-graphql-csrf` passes CSRF prevention, as every non-browser client's GETs must.
  const all = { 'x-request-id': requestId, 'x-graphql-csrf': '1', ...headers };
  if (bearer) all.authorization = `Bearer ${bearer}`;
  if (body !== undefined) all['content-type'] = 'application/json';
  const response = await fetch(`${cdn}${path}`, { method, headers: all, body });
  const text = await response.text();
  return {
    requestId,
    status: response.status,
    headers: response.headers,
    cacheStatus: response.headers.get('x-cache-status'),
    text,
    json: text ? JSON.parse(text) : undefined,
    receivedAt: Date.now(),
  };
}

/// The server's log lines about one request.
function serverLines(requestId) {
  return readFileSync(serverLog, 'utf8')
    .split('\n')
    .filter((line) => new RegExp(`request_id=${requestId}[ }]`).test(line));
}

function reachedServer(requestId) {
  return serverLines(requestId).length > 0;
}

/// `GET /graphql?documentId=…&variables=…`, what a client of persisted
/// documents sends so that a CDN can keep the answer.
function persistedPath(name, variables) {
  const params = new URLSearchParams({ documentId: documentIds[name], variables: JSON.stringify(variables) });
  return `/graphql?${params}`;
}

function queryPath(query) {
  return `/graphql?${new URLSearchParams({ query })}`;
}

/// Waits until an answer received at `receivedAt` is past its max-age
/// (nginx counts whole seconds: an entry kept at 10.9 s with max-age 2 is
/// fresh until 13 s).
async function untilExpired(receivedAt) {
  const wait = receivedAt + maxAge * 1000 + 1500 - Date.now();
  if (wait > 0) await sleep(wait);
}

before(async () => {
  assert.ok(cdn && origin && bin && serverLog && maxAge > 0, 'run through .ci/cdn.sh');
  adminToken = token('--admin');
  customerToken = token('--customer', '1');
  // The deploy pipeline registers the app's documents, through the CDN.
  const registered = await throughCdn('/admin/persisted-queries', {
    method: 'POST',
    bearer: adminToken,
    body: workloads,
  });
  assert.equal(registered.status, 200, registered.text);
  assert.equal(registered.json.registered, 3);
  assert.equal(registered.headers.get('cache-control'), 'no-store');
});

test('the second identical persisted GET is a HIT the server never sees', async () => {
  const path = persistedPath('Catalog', { c: '1' });
  const first = await throughCdn(path);
  assert.equal(first.status, 200, first.text);
  assert.equal(first.json.errors, undefined, first.text);
  assert.ok(first.json.data.products.nodes.length > 0);
  assert.equal(first.headers.get('cache-control'), `public, max-age=${maxAge}`);
  assert.equal(first.cacheStatus, 'MISS');
  assert.ok(reachedServer(first.requestId), 'the first request reached the server');

  const second = await throughCdn(path);
  assert.equal(second.cacheStatus, 'HIT');
  assert.equal(second.text, first.text);
  assert.ok(!reachedServer(second.requestId), 'a HIT never reaches the server');
  // The headers are the ones the server sent for the first request.
  assert.equal(second.headers.get('x-request-id'), first.requestId);

  // Other variables are another URL, so another entry.
  const other = await throughCdn(persistedPath('Catalog', { c: '2' }));
  assert.equal(other.cacheStatus, 'MISS');
  assert.ok(reachedServer(other.requestId));
});

test('a personal query is never cached', async () => {
  for (let i = 0; i < 2; i++) {
    // With a token: the CDN passes it by (and the server says no-store).
    const me = await throughCdn(queryPath('{ me { name } }'), { bearer: customerToken });
    assert.equal(me.status, 200, me.text);
    assert.ok(me.json.data.me.name);
    assert.equal(me.headers.get('cache-control'), 'no-store');
    assert.equal(me.cacheStatus, 'BYPASS');
    assert.ok(reachedServer(me.requestId), `request ${i + 1} with a token reached the server`);

    // Catalog data asked with a token is `private`: not for a shared cache.
    const catalog = await throughCdn(persistedPath('Catalog', { c: '3' }), { bearer: customerToken });
    assert.equal(catalog.headers.get('cache-control'), `private, max-age=${maxAge}`);
    assert.equal(catalog.cacheStatus, 'BYPASS');
    assert.ok(reachedServer(catalog.requestId));

    // Without a token: an error, `no-store`, which nginx honours.
    const anonymous = await throughCdn(queryPath('{ me { name } }'));
    assert.equal(anonymous.json.errors[0].extensions.code, 'UNAUTHENTICATED');
    assert.equal(anonymous.headers.get('cache-control'), 'no-store');
    assert.equal(anonymous.cacheStatus, 'MISS');
    assert.ok(reachedServer(anonymous.requestId), `anonymous request ${i + 1} reached the server`);
  }
  // The token-less entry for Catalog c=3 was never filled by the private answers.
  const shared = await throughCdn(persistedPath('Catalog', { c: '3' }));
  assert.equal(shared.cacheStatus, 'MISS');
});

test('after a price change and the max-age, the new price is served', async (t) => {
  const path = persistedPath('ProductPage', { id: '2' });
  const before = await throughCdn(path);
  assert.equal(before.json.errors, undefined, before.text);
  const oldPrice = before.json.data.product.price.amount;
  const cents = Math.round(Number(oldPrice) * 100) + 1234;
  const newPrice = (cents / 100).toFixed(2);

  const changed = await throughCdn('/graphql', {
    method: 'POST',
    bearer: adminToken,
    body: JSON.stringify({
      query: 'mutation ($id: ID!, $cents: Int!) { setProductPrice(productId: $id, cents: $cents) { price { amount } } }',
      variables: { id: '2', cents },
    }),
  });
  assert.equal(changed.json.errors, undefined, changed.text);
  assert.equal(changed.json.data.setProductPrice.price.amount, newPrice);
  assert.ok(reachedServer(changed.requestId));

  // Within the max-age the CDN still answers from its copy.
  const stale = await throughCdn(path);
  if (stale.receivedAt - before.receivedAt < maxAge * 1000 - 200) {
    assert.equal(stale.cacheStatus, 'HIT');
    assert.equal(stale.json.data.product.price.amount, oldPrice);
    assert.ok(!reachedServer(stale.requestId));
  } else {
    t.diagnostic('the machine was too slow to see the stale copy within the max-age');
  }

  await untilExpired(before.receivedAt);
  const fresh = await throughCdn(path);
  assert.equal(fresh.cacheStatus, 'EXPIRED');
  assert.equal(fresh.json.data.product.price.amount, newPrice);
  assert.ok(reachedServer(fresh.requestId), 'an expired entry is fetched again');

  const kept = await throughCdn(path);
  assert.equal(kept.cacheStatus, 'HIT');
  assert.equal(kept.json.data.product.price.amount, newPrice);
});

test('an expired entry is revalidated with its ETag (304 from the server)', async () => {
  const path = persistedPath('ProductPage', { id: '3' });
  const first = await throughCdn(path);
  assert.equal(first.cacheStatus, 'MISS');
  const etag = first.headers.get('etag');
  assert.match(etag ?? '', /^"[0-9a-f]+"$/);

  // A client that has the answer: nginx says 304 from its copy.
  const conditional = await throughCdn(path, { headers: { 'if-none-match': etag } });
  assert.equal(conditional.status, 304);
  assert.equal(conditional.cacheStatus, 'HIT');
  assert.ok(!reachedServer(conditional.requestId));

  // Past the max-age nginx asks the server with If-None-Match; nothing
  // changed, so the server answers 304 and the copy is kept.
  await untilExpired(first.receivedAt);
  const revalidated = await throughCdn(path);

  assert.equal(revalidated.cacheStatus, 'REVALIDATED');
  assert.equal(revalidated.status, 200);
  assert.equal(revalidated.text, first.text);
  const lines = serverLines(revalidated.requestId);
  assert.ok(lines.some((line) => line.includes('status=304')), `the server answered 304:\n${lines.join('\n')}`);
});

test('a compressed copy is not served to a client that did not ask for it (Vary)', async () => {
  const path = persistedPath('Catalog', { c: '5' });
  const gzip = await throughCdn(path, { headers: { 'accept-encoding': 'gzip' } });
  assert.equal(gzip.cacheStatus, 'MISS');
  assert.equal(gzip.headers.get('content-encoding'), 'gzip');
  const plain = await throughCdn(path, { headers: { 'accept-encoding': 'identity' } });
  assert.equal(plain.headers.get('content-encoding'), null, 'an uncompressed answer');
  assert.equal(plain.cacheStatus, 'MISS');
  assert.equal(plain.text, gzip.text);
  const again = await throughCdn(path, { headers: { 'accept-encoding': 'gzip' } });
  assert.equal(again.cacheStatus, 'HIT');
  assert.equal(again.headers.get('content-encoding'), 'gzip');
});

test('answers that differ by Accept are kept apart (Vary)', async () => {
  const path = persistedPath('Catalog', { c: '4' });
  const spec = await throughCdn(path, { headers: { accept: 'application/graphql-response+json' } });
  assert.equal(spec.cacheStatus, 'MISS');
  assert.match(spec.headers.get('content-type'), /^application\/graphql-response\+json/);
  const legacy = await throughCdn(path, { headers: { accept: 'application/json' } });
  assert.match(legacy.headers.get('content-type'), /^application\/json/);
  assert.equal(legacy.cacheStatus, 'MISS');
  const again = await throughCdn(path, { headers: { accept: 'application/graphql-response+json' } });
  assert.equal(again.cacheStatus, 'HIT');
  assert.match(again.headers.get('content-type'), /^application\/graphql-response\+json/);
});

test("a document registered for one client is not served to another from the CDN's copy", async () => {
  const body = `query IosHome_${run} { categories { slug } }`;
  const registered = await throughCdn('/admin/persisted-queries?client=ios', {
    method: 'POST',
    bearer: adminToken,
    body: JSON.stringify({ [`ios-home-${run}`]: body }),
  });
  assert.equal(registered.status, 200, registered.text);
  const path = `/graphql?${new URLSearchParams({ documentId: `ios-home-${run}` })}`;
  const ios = await throughCdn(path, { headers: { 'apollographql-client-name': 'ios' } });
  assert.equal(ios.json.errors, undefined, ios.text);
  assert.equal(ios.cacheStatus, 'MISS');
  const iosAgain = await throughCdn(path, { headers: { 'apollographql-client-name': 'ios' } });
  assert.equal(iosAgain.cacheStatus, 'HIT');

  const android = await throughCdn(path, { headers: { 'apollographql-client-name': 'android' } });
  assert.notEqual(android.cacheStatus, 'HIT', "the ios app's answer is not android's");
  assert.equal(android.json.errors?.[0]?.extensions?.code, 'PERSISTED_QUERY_NOT_FOUND', android.text);
  assert.ok(reachedServer(android.requestId));
});
