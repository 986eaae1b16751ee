// The other transports as their own client libraries see them: the legacy
// subscriptions-transport-ws client over the `graphql-ws` subprotocol,
// graphql-sse's client over Server-Sent Events, and Apollo Client's HttpLink
// over the multipart subscription protocol. In each, a price change over
// HTTP reaches the subscriber with the new price.
//
// COMMERCE_GRAPH_URL, COMMERCE_GRAPH_BIN: as for graphql-ws.test.mjs.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import WebSocket from 'ws';
import { SubscriptionClient } from 'subscriptions-transport-ws';
import { createClient as createSseClient } from 'graphql-sse';
import { ApolloClient, HttpLink, InMemoryCache, gql } from '@apollo/client/core/index.js';

const commerce = process.env.COMMERCE_GRAPH_URL;
const bin = process.env.COMMERCE_GRAPH_BIN;
const endpoint = `${commerce}/graphql`;
const wsUrl = endpoint.replace(/^http/, 'ws');
const PRICE = 'subscription($id: ID!) { productUpdated(id: $id) { id price { cents } } }';
const admin = execFileSync(bin, ['token', '--admin'], { encoding: 'utf8' }).trim();

async function setPrice(id, cents) {
  const response = await fetch(endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${admin}` },
    body: JSON.stringify({
      query: 'mutation($id: ID!, $cents: Int!) { setProductPrice(productId: $id, cents: $cents) { id } }',
      variables: { id, cents },
    }),
  });
  const body = await response.json();
  assert.equal(body.errors, undefined, JSON.stringify(body.errors));
}

// These clients do not say when the server has the subscription in place,
// so the price changes every 200 ms until a result arrives; the result must
// carry one of the prices set (the state after a committed change).
async function changeUntilSeen(id, results) {
  const set = [];
  for (let i = 0; i < 50 && results.length === 0; i++) {
    const cents = 3000 + Math.floor(Math.random() * 5000);
    set.push(cents);
    await setPrice(id, cents);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  assert.ok(results.length > 0, 'no result within 10 s');
  const result = results[0];
  assert.equal(result.errors, undefined, JSON.stringify(result));
  assert.equal(result.data.productUpdated.id, id);
  assert.ok(set.includes(result.data.productUpdated.price.cents), JSON.stringify(result));
}

test('the legacy subscriptions-transport-ws client gets the new price', async () => {
  const client = new SubscriptionClient(
    wsUrl,
    { reconnect: false, connectionParams: { authorization: `Bearer ${admin}` } },
    WebSocket,
  );
  const results = [];
  const subscription = client
    .request({ query: PRICE, variables: { id: '12' } })
    .subscribe({ next: (result) => results.push(result), error: (error) => results.push({ errors: [error] }) });
  try {
    await changeUntilSeen('12', results);
  } finally {
    subscription.unsubscribe();
    client.close();
  }
});

test("graphql-sse's client gets the new price over Server-Sent Events", async () => {
  const client = createSseClient({ url: endpoint, retryAttempts: 0 });
  const results = [];
  const dispose = client.subscribe(
    { query: PRICE, variables: { id: '13' } },
    { next: (result) => results.push(result), error: (error) => results.push({ errors: [String(error)] }), complete: () => {} },
  );
  try {
    await changeUntilSeen('13', results);
  } finally {
    dispose();
    client.dispose();
  }
});

test("Apollo Client's HttpLink gets the new price over multipart HTTP", async () => {
  const client = new ApolloClient({
    link: new HttpLink({ uri: endpoint }),
    cache: new InMemoryCache(),
  });
  const results = [];
  const subscription = client
    .subscribe({ query: gql(PRICE), variables: { id: '14' }, fetchPolicy: 'no-cache' })
    .subscribe({ next: (result) => results.push(result), error: (error) => results.push({ errors: [String(error)] }) });
  try {
    await changeUntilSeen('14', results);
  } finally {
    subscription.unsubscribe();
    client.stop();
  }
});
