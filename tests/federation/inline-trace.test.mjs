// commerce-graph's inline trace (ftv1), decoded with Apollo's own protobuf
// package, the one its gateway and usage reporting read subgraph traces with.
//
// COMMERCE_GRAPH_URL: the running commerce-graph (e.g. http://127.0.0.1:4567)
// COMMERCE_GRAPH_ROUTER_SECRET: the router secret the server was given.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Trace } from '@apollo/usage-reporting-protobuf';

const commerce = process.env.COMMERCE_GRAPH_URL;
const routerSecret = process.env.COMMERCE_GRAPH_ROUTER_SECRET;

async function post(query, headers) {
  const response = await fetch(`${commerce}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ query }),
  });
  return response.json();
}

const asRouter = { 'apollo-federation-include-trace': 'ftv1', 'x-router-secret': routerSecret };

/** The child of `node` with this response name (or list index). */
function child(node, key) {
  const found = node.child.find((c) =>
    typeof key === 'number' ? c.id === 'index' && c.index === key : c.id === 'responseName' && c.responseName === key
  );
  assert.ok(found, `no ${key} under ${JSON.stringify(node)}`);
  return found;
}

test('the router gets a trace Apollo can decode, with every field and its errors', async () => {
  assert.ok(commerce && routerSecret, 'set COMMERCE_GRAPH_URL and COMMERCE_GRAPH_ROUTER_SECRET');
  const before = Date.now();
  const result = await post(
    '{ product(id: "5") { name: title price { amount } reviews(first: 2) { rating author { email } } } }',
    asRouter
  );
  const after = Date.now();
  assert.equal(typeof result.extensions?.ftv1, 'string', JSON.stringify(result));
  const trace = Trace.decode(Buffer.from(result.extensions.ftv1, 'base64'));

  const startMs = trace.startTime.seconds * 1000 + trace.startTime.nanos / 1e6;
  const endMs = trace.endTime.seconds * 1000 + trace.endTime.nanos / 1e6;
  assert.ok(before - 1000 <= startMs && startMs <= endMs && endMs <= after + 1000, 'wall-clock times');
  assert.ok(trace.durationNs > 0);

  const product = child(trace.root, 'product');
  assert.deepEqual([product.parentType, product.type], ['Query', 'Product']);
  assert.ok(product.startTime <= product.endTime && product.endTime <= trace.durationNs);
  const name = child(product, 'name');
  assert.deepEqual([name.originalFieldName, name.parentType, name.type], ['title', 'Product', 'String!']);
  assert.equal(child(child(product, 'price'), 'amount').type, 'String!');

  const reviews = child(product, 'reviews');
  assert.equal(reviews.type, '[Review!]!');
  assert.equal(reviews.child.length, result.data.product.reviews.length);
  for (const index of result.data.product.reviews.keys()) {
    const element = child(reviews, index);
    assert.equal(child(element, 'rating').type, 'Int!');
    // Anonymous: the email is refused, and the trace says so at its path.
    const email = child(child(element, 'author'), 'email');
    assert.equal(email.error.length, 1);
    assert.equal(email.error[0].location[0].line, 1);
    const json = JSON.parse(email.error[0].json);
    assert.deepEqual(json.path, ['product', 'reviews', index, 'author', 'email']);
    assert.equal(json.message, email.error[0].message);
  }
});

test('no trace without the header, nor for a caller without the router secret', async () => {
  const query = '{ product(id: "5") { title } }';
  for (const headers of [
    { 'x-router-secret': routerSecret },
    { 'apollo-federation-include-trace': 'ftv1' },
    { 'apollo-federation-include-trace': 'ftv1', 'x-router-secret': 'not-the-secret-at-all' },
  ]) {
    const result = await post(query, headers);
    assert.equal(typeof result.data.product.title, 'string');
    assert.equal(result.extensions?.ftv1, undefined, JSON.stringify(headers));
  }
});
