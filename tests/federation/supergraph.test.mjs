// commerce-graph as one subgraph of a real supergraph: its SDL composes with
// Apollo's and The Guild's composition libraries beside a second subgraph, and
// an Apollo gateway on loopback runs queries that cross both, forwarding the
// caller's token so commerce-graph's authorization still holds.
//
// COMMERCE_GRAPH_URL: the running commerce-graph (e.g. http://127.0.0.1:4567)
// COMMERCE_GRAPH_BIN: its binary, to mint tokens with the server's secret
//   (COMMERCE_GRAPH_JWT_SECRET must be the server's too).
// COMMERCE_GRAPH_ROUTER_SECRET: the router secret the server was given; the
//   gateway sends it, direct callers do not.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { parse } from 'graphql';
import { composeServices as apolloCompose } from '@apollo/composition';
import { composeServices as guildCompose } from '@theguild/federation-composition';
import { ApolloServer } from '@apollo/server';
import { startStandaloneServer } from '@apollo/server/standalone';
import { ApolloGateway, RemoteGraphQLDataSource } from '@apollo/gateway';
import { startShippingSubgraph, typeDefs as shippingTypeDefs, estimateFor } from './shipping-subgraph.mjs';

const commerce = process.env.COMMERCE_GRAPH_URL;
const bin = process.env.COMMERCE_GRAPH_BIN;
const routerSecret = process.env.COMMERCE_GRAPH_ROUTER_SECRET;

function token(...args) {
  return execFileSync(bin, ['token', ...args], { encoding: 'utf8' }).trim();
}

async function post(url, query, variables = {}, authorization, extraHeaders = {}) {
  const headers = { 'content-type': 'application/json', ...extraHeaders };
  if (authorization) headers.authorization = `Bearer ${authorization}`;
  const response = await fetch(url, { method: 'POST', headers, body: JSON.stringify({ query, variables }) });
  return response.json();
}

// The gateway's query-plan traces, by the test's `x-test-trace` header. A
// request with that header is traced as Apollo's usage reporting would trace
// it: the gateway asks each subgraph for its inline trace (ftv1) and merges
// the decoded traces into the plan's fetch nodes.
const queryPlanTraces = new Map();
const queryPlanTraceRecorder = {
  async requestDidStart({ request, metrics }) {
    const key = request.http?.headers.get('x-test-trace');
    if (!key) return {};
    metrics.captureTraces = true;
    return {
      async willSendResponse({ metrics }) {
        queryPlanTraces.set(key, metrics.queryPlanTrace);
      },
    };
  },
};

/** Every fetch node of a query-plan trace. */
function fetchNodes(node) {
  if (!node) return [];
  if (node.fetch) return [node.fetch];
  if (node.flatten) return fetchNodes(node.flatten.node);
  return (node.sequence ?? node.parallel)?.nodes.flatMap(fetchNodes) ?? [];
}

let shipping;
let gateway;
let gatewayUrl;
let gatewayStarted = false;
let owner;
let stranger;

before(async () => {
  assert.ok(commerce && bin && routerSecret, 'set COMMERCE_GRAPH_URL, _BIN and _ROUTER_SECRET');
  const admin = token('--admin');
  const order = await post(`${commerce}/graphql`, '{ order(id: "1") { customer { id } } }', {}, admin);
  owner = order.data.order.customer.id;
  stranger = String((Number(owner) % 2000) + 1);
  shipping = await startShippingSubgraph({
    shipments: [{ id: 's1', customerId: owner, orderId: '1', productId: '7' }],
  });
  // Compose the supergraph as a deploy pipeline would. Apollo's JS gateway
  // refuses supergraphs whose SECURITY features (@authenticated,
  // @requiresScopes: enforced by Apollo Router, not by the JS gateway) it
  // cannot apply, so their links are downgraded to plain links here; the
  // directives stay in the schema and commerce-graph enforces the rules
  // itself, which is what these tests check.
  const { data } = await post(`${commerce}/graphql`, '{ _service { sdl } }', {}, undefined, {
    'x-router-secret': routerSecret,
  });
  const composed = apolloCompose([
    { name: 'commerce', typeDefs: parse(data._service.sdl), url: `${commerce}/graphql` },
    { name: 'shipping', typeDefs: shippingTypeDefs, url: shipping.url },
  ]);
  assert.equal(composed.errors, undefined, JSON.stringify(composed.errors?.map((e) => e.message)));
  const supergraphSdl = composed.supergraphSdl.replaceAll(', for: SECURITY)', ')');
  gateway = new ApolloServer({
    plugins: [queryPlanTraceRecorder],
    gateway: new ApolloGateway({
      supergraphSdl,
      // The router forwards the caller's token to the subgraphs.
      buildService: ({ url }) =>
        new RemoteGraphQLDataSource({
          url,
          willSendRequest({ request, context }) {
            if (context.authorization) request.http.headers.set('authorization', context.authorization);
            request.http.headers.set('x-router-secret', routerSecret);
          },
        }),
    }),
  });
  ({ url: gatewayUrl } = await startStandaloneServer(gateway, {
    listen: { host: '127.0.0.1', port: 0 },
    context: async ({ req }) => ({ authorization: req.headers.authorization }),
  }));
  gatewayStarted = true;
});

after(async () => {
  if (gatewayStarted) await gateway.stop();
  await shipping?.stop();
});

test('the subgraph SDL composes alone and beside another subgraph, with both libraries', async () => {
  const { data } = await post(`${commerce}/graphql`, '{ _service { sdl } }', {}, undefined, {
    'x-router-secret': routerSecret,
  });
  const commerceSdl = parse(data._service.sdl);
  const alone = [{ name: 'commerce', typeDefs: commerceSdl, url: `${commerce}/graphql` }];
  const both = [...alone, { name: 'shipping', typeDefs: shippingTypeDefs, url: 'http://127.0.0.1:1/graphql' }];
  for (const services of [alone, both]) {
    const apollo = apolloCompose(services);
    assert.equal(apollo.errors, undefined, JSON.stringify(apollo.errors?.map((e) => e.message)));
    // The contract tags reach the supergraph, where contracts filter by them.
    assert.match(apollo.supergraphSdl, /me: Customer .*@tag\(name: "personal"\)/);
    assert.match(apollo.supergraphSdl, /setProductPrice\(.*@tag\(name: "internal"\)/);
    const guild = guildCompose(services);
    assert.equal(guild.errors, undefined, JSON.stringify(guild.errors?.map((e) => e.message)));
  }
});

test('a query through the gateway joins both subgraphs', async () => {
  const result = await post(
    gatewayUrl,
    '{ products(first: 3) { nodes { id title price { amount } shippingEstimate { days carrier } } } }'
  );
  assert.equal(result.errors, undefined, JSON.stringify(result.errors));
  const nodes = result.data.products.nodes;
  assert.equal(nodes.length, 3);
  for (const node of nodes) {
    assert.ok(node.title.length > 0);
    assert.deepEqual(node.shippingEstimate, estimateFor(node.id));
  }
});

test("the gateway merges commerce-graph's inline traces into its query plan", async () => {
  const query = '{ shipment(id: "s1") { product { title price { amount } } } products(first: 2) { nodes { title shippingEstimate { days } } } }';
  const result = await post(gatewayUrl, query, {}, undefined, { 'x-test-trace': 'plan' });
  assert.equal(result.errors, undefined, JSON.stringify(result.errors));
  const fetches = fetchNodes(queryPlanTraces.get('plan')).filter((f) => f.serviceName === 'commerce');
  // One fetch for `products`, one for the shipment's product entity.
  assert.equal(fetches.length, 2);
  for (const fetch of fetches) {
    assert.equal(fetch.traceParsingFailed, false);
    assert.ok(fetch.trace?.durationNs > 0, 'a trace from commerce-graph');
  }
  const roots = fetches.map((f) => f.trace.root.child.map((c) => c.responseName));
  assert.deepEqual(roots.map((r) => r[0]).sort(), ['_entities', 'products']);
  const entities = fetches.find((f) => f.trace.root.child[0].responseName === '_entities');
  const fields = entities.trace.root.child[0].child.map((c) => `${c.parentType}.${c.originalFieldName || c.responseName}`);
  assert.ok(fields.includes('Product.title'), JSON.stringify(fields));
  assert.ok(fields.includes('Product.price'), JSON.stringify(fields));
});

test('entities referenced by the other subgraph resolve in commerce-graph', async () => {
  const query = '{ shipment(id: "s1") { id product { id title shippingEstimate { days } } customer { id name email } order { number total { amount } } } }';
  const result = await post(gatewayUrl, query, {}, token('--customer', owner));
  assert.equal(result.errors, undefined, JSON.stringify(result.errors));
  const shipment = result.data.shipment;
  assert.equal(shipment.product.id, '7');
  assert.equal(shipment.product.shippingEstimate.days, estimateFor('7').days);
  assert.equal(shipment.customer.id, owner);
  assert.match(shipment.customer.email, /@/);
  assert.match(shipment.order.number, /^CG-/);
});

test("a forwarded customer token cannot reach another customer's order or email", async () => {
  const query = '{ shipment(id: "s1") { id customer { name email } order { number total { amount } } } }';
  const result = await post(gatewayUrl, query, {}, token('--customer', stranger));
  assert.ok(result.errors?.length > 0, 'errors are reported');
  const text = JSON.stringify(result.data);
  assert.doesNotMatch(text, /CG-/, 'no order number');
  assert.doesNotMatch(text, /"amount"/, 'no order total');
  assert.doesNotMatch(text, /@example/, 'no email');
  const codes = result.errors.map((e) => e.extensions?.code);
  assert.ok(codes.includes('FORBIDDEN'), JSON.stringify(result.errors));
});

test('calling the subgraph directly, around the router, gets no entities', async () => {
  const result = await post(
    `${commerce}/graphql`,
    'query($r: [_Any!]!) { _entities(representations: $r) { ... on Order { total { amount } } } }',
    { r: [{ __typename: 'Order', id: '1' }] },
    token('--customer', owner)
  );
  assert.deepEqual(result.errors.map((e) => e.extensions.code), ['ROUTER_SECRET_REQUIRED']);
  assert.doesNotMatch(JSON.stringify(result.data ?? null), /amount/);
});
