// Two commerce-graph replicas (release binaries, separate processes) on one
// PostgreSQL database, as clients behind a load balancer see them: a
// subscriber on A hears of a mutation made on B; a document registered
// through B is served by A; a price changed on A is not served stale by B
// (its cached answer is purged, long before the 60 s the cache hint allows).
//
// COMMERCE_GRAPH_URL_A, COMMERCE_GRAPH_URL_B: the two replicas
// COMMERCE_GRAPH_BIN: the binary, to mint tokens (COMMERCE_GRAPH_JWT_SECRET
//   must be the replicas' too)

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const a = process.env.COMMERCE_GRAPH_URL_A;
const b = process.env.COMMERCE_GRAPH_URL_B;
const bin = process.env.COMMERCE_GRAPH_BIN;
const admin = execFileSync(bin, ['token', '--admin'], { encoding: 'utf8' }).trim();

const SET_PRICE =
  'mutation($id: ID!, $cents: Int!) { setProductPrice(productId: $id, cents: $cents) { id } }';

async function post(base, body, bearer) {
  const headers = { 'content-type': 'application/json' };
  if (bearer) headers.authorization = `Bearer ${bearer}`;
  const response = await fetch(`${base}/graphql`, {
    method: 'POST',
    headers,
    body: JSON.stringify(body),
  });
  return response.json();
}

async function setPrice(base, id, cents) {
  const body = await post(base, { query: SET_PRICE, variables: { id, cents } }, admin);
  assert.equal(body.errors, undefined, JSON.stringify(body.errors));
}

/// Polls `check` until it returns true, for at most `seconds`.
async function eventually(what, check, seconds = 3) {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    if (await check()) return;
    assert.ok(Date.now() < deadline, `${what} within ${seconds} s`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

test('a subscriber on replica A receives the event of a mutation on replica B', async () => {
  const client = createClient({
    url: `${a.replace(/^http/, 'ws')}/graphql`,
    webSocketImpl: WebSocket,
    retryAttempts: 0,
  });
  try {
    const results = [];
    let arrived;
    const first = new Promise((resolve) => { arrived = resolve; });
    client.subscribe(
      { query: 'subscription { productUpdated(id: "5") { id price { cents } } }' },
      {
        next: (result) => { results.push(result); arrived(); },
        error: (error) => { results.push({ error }); arrived(); },
        complete: () => {},
      },
    );
    // The subscription is in place once a query on the same socket answered.
    await new Promise((resolve, reject) => {
      client.subscribe({ query: '{ __typename }' }, { next: () => {}, error: reject, complete: resolve });
    });
    await setPrice(b, '5', 5_555);
    await Promise.race([
      first,
      new Promise((_, reject) => setTimeout(() => reject(new Error('no event within 5 s')), 5_000)),
    ]);
    assert.deepEqual(results[0], { data: { productUpdated: { id: '5', price: { cents: 5_555 } } } });
  } finally {
    await client.dispose();
  }
});

test('a document registered through replica B is served by replica A', async () => {
  const body = `query ReplicaDocument { categories { slug } } # ${Date.now()}`;
  const id = createHash('sha256').update(body).digest('hex');
  // A does not know it yet (and remembers that for 5 s, unless told).
  const before = await post(a, { documentId: id });
  assert.equal(before.errors?.[0]?.extensions?.code, 'PERSISTED_QUERY_NOT_FOUND');

  const manifest = {
    format: 'apollo-persisted-query-manifest',
    version: 1,
    operations: [{ id, name: 'ReplicaDocument', type: 'query', body }],
  };
  const imported = await fetch(`${b}/admin/persisted-queries`, {
    method: 'POST',
    headers: { authorization: `Bearer ${admin}` },
    body: JSON.stringify(manifest),
  });
  assert.equal(imported.status, 200);
  await eventually('A serves the document', async () => {
    const reply = await post(a, { documentId: id });
    return Array.isArray(reply.data?.categories);
  });
});

test('a price changed on replica A is not served stale by replica B', async () => {
  const url = (base) =>
    `${base}/graphql?query=${encodeURIComponent('{ product(id: "33") { price { cents } } }')}`;
  const price = async (base) => {
    const response = await fetch(url(base), { headers: { 'x-graphql-csrf': '1' } });
    const body = await response.json();
    return {
      cents: body.data.product.price.cents,
      statements: Number(response.headers.get('x-sql-statements')),
      cacheControl: response.headers.get('cache-control'),
    };
  };
  const before = await price(b);
  const cached = await price(b);
  assert.equal(cached.statements, 0, 'B answers the repeat from its response cache');
  const maxAge = Number(/max-age=(\d+)/.exec(cached.cacheControl)?.[1]);
  assert.ok(maxAge >= 10, `a cache hint longer than the wait below: ${cached.cacheControl}`);

  await setPrice(a, '33', before.cents + 1);
  // The cache hint allows B to keep its copy (60 s for a product); the purge
  // that came with A's write makes it answer anew at once.
  await eventually('B serves the new price', async () => (await price(b)).cents === before.cents + 1);
});
