// commerce-graph's subscriptions as the graphql-ws npm client (what Apollo
// Client, urql and GraphiQL use) sees them: a mutation over HTTP changes a
// price or an order, and the event arrives with the new state; a bad token
// is refused with the protocol's close code.
//
// COMMERCE_GRAPH_URL: the running commerce-graph (e.g. http://127.0.0.1:4567)
// COMMERCE_GRAPH_BIN: its binary, to mint tokens with the server's secret
//   (COMMERCE_GRAPH_JWT_SECRET must be the server's too).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const commerce = process.env.COMMERCE_GRAPH_URL;
const bin = process.env.COMMERCE_GRAPH_BIN;
const wsUrl = `${commerce.replace(/^http/, 'ws')}/graphql`;

function token(...args) {
  return execFileSync(bin, ['token', ...args], { encoding: 'utf8' }).trim();
}

async function post(query, variables, bearer) {
  const response = await fetch(`${commerce}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${bearer}` },
    body: JSON.stringify({ query, variables }),
  });
  const body = await response.json();
  assert.equal(body.errors, undefined, JSON.stringify(body.errors));
  return body.data;
}

function client(connectionParams, closed) {
  return createClient({
    url: wsUrl,
    webSocketImpl: WebSocket,
    connectionParams,
    retryAttempts: 0,
    on: { closed: (event) => closed?.(event) },
  });
}

/// Collects the results of a subscription; resolves `ready` once the server
/// has handled it (the server answers a later query on the same socket
/// only after the subscription is in place).
function watch(c, query, variables) {
  const results = [];
  let notify;
  const waiting = [];
  c.subscribe({ query, variables }, {
    next: (result) => {
      results.push(result);
      waiting.splice(0).forEach((resolve) => resolve());
    },
    error: (error) => {
      results.push({ error });
      waiting.splice(0).forEach((resolve) => resolve());
    },
    complete: () => {},
  });
  const next = async (count) => {
    const deadline = Date.now() + 10_000;
    while (results.length < count) {
      if (Date.now() > deadline) throw new Error(`no result ${count} within 10 s`);
      await new Promise((resolve) => {
        waiting.push(resolve);
        setTimeout(resolve, 200);
      });
    }
    return results[count - 1];
  };
  return { results, next };
}

/// Resolves once the server handled every message sent on `c` before it.
function settled(c) {
  return new Promise((resolve, reject) => {
    c.subscribe({ query: '{ __typename }' }, { next: () => {}, error: reject, complete: resolve });
  });
}

test('a price change over HTTP reaches a graphql-ws subscriber with the new price', async () => {
  const c = client({});
  try {
    const price = watch(c, 'subscription($id: ID!) { productUpdated(id: $id) { id price { cents amount } } }', { id: '11' });
    await settled(c);
    await post(
      'mutation($id: ID!, $cents: Int!) { setProductPrice(productId: $id, cents: $cents) { id } }',
      { id: '11', cents: 2599 },
      token('--admin'),
    );
    const result = await price.next(1);
    assert.deepEqual(result.data.productUpdated, { id: '11', price: { cents: 2599, amount: '25.99' } });
  } finally {
    await c.dispose();
  }
});

test("the owner watches their order's status change", async () => {
  const admin = token('--admin');
  const data = await post('{ orders(first: 1, status: PENDING) { nodes { id customer { id } } } }', {}, admin);
  const order = data.orders.nodes[0];
  const c = client({ authorization: `Bearer ${token('--customer', order.customer.id)}` });
  try {
    const status = watch(c, 'subscription($id: ID!) { orderStatusChanged(orderId: $id) { id status } }', { id: order.id });
    await settled(c);
    await post('mutation($id: ID!) { updateOrderStatus(id: $id, status: PAID) { id } }', { id: order.id }, admin);
    const result = await status.next(1);
    assert.deepEqual(result.data.orderStatusChanged, { id: order.id, status: 'PAID' });
  } finally {
    await c.dispose();
  }
});

test('a bad token is refused with 4403', async () => {
  let c;
  const closed = new Promise((resolve) => {
    c = client({ authorization: 'Bearer forged' }, resolve);
    // The client connects when it has something to run; the refusal ends
    // the operation with the close event.
    c.subscribe({ query: '{ __typename }' }, { next: () => {}, error: () => {}, complete: () => {} });
  });
  const event = await closed;
  await c.dispose();
  assert.equal(event.code, 4403);
});

test('a subscription document past the limits gets an error with its code', async () => {
  const c = client({});
  try {
    const deep = 'subscription { productUpdated(id: "1") { category { products { nodes { category { products { nodes { category { products { nodes { category { products { nodes { id } } } } } } } } } } } } } }';
    const watched = watch(c, deep, {});
    const result = await watched.next(1);
    const errors = result.error;
    assert.ok(Array.isArray(errors), JSON.stringify(result));
    assert.equal(errors[0].extensions.code, 'QUERY_TOO_DEEP');
  } finally {
    await c.dispose();
  }
});
