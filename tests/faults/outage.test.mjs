// A PostgreSQL outage under two commerce-graph replicas (release binaries),
// as their clients and load balancer see it (issue 8, point 4): with the
// server stopped, readiness turns 503 within seconds, GraphQL fails fast
// with SERVICE_UNAVAILABLE, a cached public answer is still served (marked
// stale), and a subscriber stays connected; once the server is back,
// readiness is 200 again without a restart and a mutation on B reaches the
// subscriber on A (LISTEN was made again).
//
// COMMERCE_GRAPH_URL_A, COMMERCE_GRAPH_URL_B: the two replicas, started with
//   --stale-if-error and --max-cache-age 2 (answers go stale after 2 s)
// COMMERCE_GRAPH_BIN: the binary, to mint tokens
// `bash -c halt_postgres` / `bash -c start_postgres`: stop and start the
//   database (.ci/start-postgres.sh exports them)

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const a = process.env.COMMERCE_GRAPH_URL_A;
const b = process.env.COMMERCE_GRAPH_URL_B;
const admin = execFileSync(process.env.COMMERCE_GRAPH_BIN, ['token', '--admin'], {
  encoding: 'utf8',
}).trim();

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const seconds = (since) => ((Date.now() - since) / 1000).toFixed(2);

async function post(base, query, variables = {}, bearer = undefined) {
  const headers = { 'content-type': 'application/json' };
  if (bearer) headers.authorization = `Bearer ${bearer}`;
  const response = await fetch(`${base}/graphql`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ query, variables }),
  });
  return { status: response.status, headers: response.headers, body: await response.json() };
}

async function get(base, query) {
  const response = await fetch(`${base}/graphql?query=${encodeURIComponent(query)}`, {
    headers: { 'x-graphql-csrf': '1' },
  });
  return { status: response.status, headers: response.headers, body: await response.json() };
}

const readiness = async (base) => (await fetch(`${base}/health/ready`)).status;

/// Polls until every replica's readiness is `status`; returns the seconds it took.
async function untilReady(status, within) {
  const started = Date.now();
  for (;;) {
    const statuses = await Promise.all([a, b].map(readiness));
    if (statuses.every((s) => s === status)) return seconds(started);
    assert.ok(Date.now() - started < within * 1000, `readiness ${status} within ${within} s (${statuses})`);
    await sleep(100);
  }
}

const SET_PRICE =
  'mutation($id: ID!, $cents: Int!) { setProductPrice(productId: $id, cents: $cents) { id } }';
const CACHED = '{ product(id: "21") { id title price { cents } } }';

test('through a database outage and back, without a restart', async () => {
  // A subscriber on A, in place once a query on its socket answered.
  let closed = false;
  const events = [];
  const client = createClient({
    url: `${a.replace(/^http/, 'ws')}/graphql`,
    webSocketImpl: WebSocket,
    retryAttempts: 0,
    on: { closed: () => { closed = true; } },
  });
  const onSocket = () =>
    new Promise((resolve, reject) => {
      let answer;
      client.subscribe({ query: '{ __typename }' }, {
        next: (result) => { answer = result; },
        error: reject,
        complete: () => resolve(answer),
      });
    });
  client.subscribe(
    { query: 'subscription { productUpdated(id: "12") { id price { cents } } }' },
    { next: (result) => events.push(result), error: (error) => events.push({ error }), complete: () => {} },
  );
  try {
    await onSocket();
    // A's answer is cached (fresh for 2 s, then stale-if-error).
    const cached = await get(a, CACHED);
    assert.equal(cached.status, 200);
    assert.match(cached.headers.get('cache-control'), /stale-if-error=\d+/);
    assert.equal((await get(a, CACHED)).headers.get('x-sql-statements'), '0');
    const cachedAt = Date.now();

    let started = Date.now();
    execFileSync('bash', ['-c', 'halt_postgres'], { stdio: 'inherit' });
    console.log(`PostgreSQL stopped in ${seconds(started)} s`);
    started = Date.now();
    console.log(`both replicas 503 on /health/ready after ${await untilReady(503, 5)} s`);

    // Fails fast: well under the pool's 10 s connect timeout.
    started = Date.now();
    const refused = await post(a, '{ product(id: "22") { id title } }');
    const took = Date.now() - started;
    console.log(`an uncached query was refused in ${took} ms`);
    assert.equal(refused.status, 503, JSON.stringify(refused.body));
    assert.equal(refused.headers.get('retry-after'), '5');
    assert.equal(refused.body.data, undefined);
    assert.deepEqual(refused.body.errors.map((e) => e.extensions.code), ['SERVICE_UNAVAILABLE']);
    assert.ok(took < 3000, `${took} ms`);
    const write = await post(b, SET_PRICE, { id: '12', cents: 1_212 }, admin);
    assert.deepEqual(write.body.errors.map((e) => e.extensions.code), ['SERVICE_UNAVAILABLE']);

    // The cached answer, past its max-age: still served, marked stale.
    await sleep(Math.max(0, 2_100 - (Date.now() - cachedAt)));
    const stale = await get(a, CACHED);
    assert.equal(stale.status, 200);
    assert.deepEqual(stale.body, cached.body);
    assert.equal(stale.headers.get('warning'), '110 - "Response is Stale"');
    assert.ok(Number(stale.headers.get('age')) >= 2, `age ${stale.headers.get('age')}`);

    // The subscriber's socket is still open, and still answers.
    assert.equal(closed, false, 'the WebSocket stayed open');
    assert.deepEqual(await onSocket(), { data: { __typename: 'Query' } });

    started = Date.now();
    execFileSync('bash', ['-c', 'start_postgres'], { stdio: 'inherit' });
    console.log(`PostgreSQL started in ${seconds(started)} s`);
    started = Date.now();
    console.log(`both replicas 200 on /health/ready after ${await untilReady(200, 30)} s`);

    // B's write reaches A's subscriber: A listens again.
    started = Date.now();
    const price = await post(b, SET_PRICE, { id: '12', cents: 1_234 }, admin);
    assert.equal(price.body.errors, undefined, JSON.stringify(price.body.errors));
    while (events.length === 0) {
      assert.ok(Date.now() - started < 5_000, 'the event within 5 s');
      await sleep(20);
    }
    console.log(`B's price change reached A's subscriber in ${Date.now() - started} ms`);
    assert.deepEqual(events[0], { data: { productUpdated: { id: '12', price: { cents: 1_234 } } } });
    assert.equal(closed, false);

  } finally {
    await client.dispose();
  }
});
