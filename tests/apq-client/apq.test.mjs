// Apollo Client's own persisted-queries link against commerce-graph: the APQ
// round trip as a real app makes it, once over POST and once with
// `useGETForHashedQueries`. Every request and response that goes over the
// wire is recorded (a wrapped fetch), and the tests assert on those, not only
// on the data the client hands back.
//
// COMMERCE_GRAPH_URL: the running server (e.g. http://127.0.0.1:4567), in a
//   mode that accepts APQ (`apq`, the development default, or `audit`).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { ApolloClient, HttpLink, InMemoryCache, gql } from '@apollo/client/core/index.js';
import { createPersistedQueryLink } from '@apollo/client/link/persisted-queries/index.js';

const base = process.env.COMMERCE_GRAPH_URL;

const sha256 = (text) => createHash('sha256').update(text).digest('hex');

/// A query text this server has never seen: the operation name and an alias
/// carry a fresh nonce, so its hash is unknown until the client sends it.
function freshQuery(mode) {
  const nonce = `${mode}_${Date.now()}_${randomBytes(4).toString('hex')}`;
  return gql`
    query Apq_${nonce}($id: ID!) {
      product(id: $id) { id title price { amount currency } }
      seen_${nonce}: categories { slug }
    }
  `;
}

/// A fetch that records what went over the wire, for the link to use.
function recordingFetch() {
  const exchanges = [];
  const fetchAndRecord = async (input, init = {}) => {
    const response = await fetch(input, init);
    const text = await response.clone().text();
    exchanges.push({
      method: (init.method || 'GET').toUpperCase(),
      url: new URL(String(input)),
      body: init.body ? JSON.parse(init.body) : undefined,
      status: response.status,
      cacheControl: response.headers.get('cache-control'),
      response: JSON.parse(text),
    });
    return response;
  };
  return { fetch: fetchAndRecord, exchanges };
}

/// One app: its own cache, link chain and record of requests.
function apolloApp(useGETForHashedQueries, headers) {
  const wire = recordingFetch();
  const client = new ApolloClient({
    cache: new InMemoryCache(),
    link: createPersistedQueryLink({ sha256, useGETForHashedQueries }).concat(
      new HttpLink({ uri: `${base}/graphql`, fetch: wire.fetch, headers }),
    ),
  });
  return { client, exchanges: wire.exchanges };
}

/// The APQ parameters of a recorded request, from its body or query string.
function sent(exchange) {
  if (exchange.method === 'GET') {
    const params = exchange.url.searchParams;
    return {
      query: params.get('query') ?? undefined,
      extensions: params.has('extensions') ? JSON.parse(params.get('extensions')) : undefined,
      variables: params.has('variables') ? JSON.parse(params.get('variables')) : undefined,
    };
  }
  return exchange.body;
}

function errorCodes(exchange) {
  return (exchange.response.errors || []).map((e) => e.extensions?.code);
}

async function roundTrip({ useGETForHashedQueries, headers = {} }) {
  assert.ok(base, 'set COMMERCE_GRAPH_URL to the running server');
  const hashedMethod = useGETForHashedQueries ? 'GET' : 'POST';
  const graphqlResponse = Boolean(headers.accept?.startsWith('application/graphql-response+json'));
  const query = freshQuery(`${hashedMethod.toLowerCase()}${graphqlResponse ? '_gr' : ''}`);
  const variables = { id: '1' };

  const first = apolloApp(useGETForHashedQueries, headers);
  const result = await first.client.query({ query, variables, fetchPolicy: 'network-only' });
  assert.equal(result.data.product.id, '1');
  assert.ok(result.data.product.title);

  assert.equal(first.exchanges.length, 2, 'a miss, then the retry with the body');
  const [miss, retry] = first.exchanges;
  const hash = sent(miss).extensions.persistedQuery.sha256Hash;
  assert.deepEqual(sent(miss).extensions.persistedQuery, { version: 1, sha256Hash: hash });

  // 1. Hash only: the server does not know it yet.
  assert.equal(miss.method, hashedMethod);
  assert.equal(sent(miss).query, undefined, 'the first request carries no document');
  assert.deepEqual(errorCodes(miss), ['PERSISTED_QUERY_NOT_FOUND']);
  assert.equal(miss.response.errors[0].message, 'PersistedQueryNotFound');
  assert.equal(miss.cacheControl, 'no-store', 'a miss is never cached');
  // A request error: 400 under the GraphQL response media type, which
  // Apollo Client sees as a network error carrying the GraphQL errors.
  assert.equal(miss.status, graphqlResponse ? 400 : 200);

  // 2. The retry sends the document (always with POST) and its hash.
  assert.equal(retry.method, 'POST');
  assert.equal(sha256(retry.body.query), hash, 'the hash is the SHA-256 of the document sent');
  assert.deepEqual(retry.body.extensions.persistedQuery, { version: 1, sha256Hash: hash });
  assert.deepEqual(retry.body.variables, variables);
  assert.equal(retry.response.errors, undefined, JSON.stringify(retry.response.errors));
  assert.equal(retry.response.data.product.id, '1');

  // 3. Another app with the same query: served by the hash alone.
  const second = apolloApp(useGETForHashedQueries, headers);
  const again = await second.client.query({ query, variables, fetchPolicy: 'network-only' });
  assert.deepEqual(again.data, result.data);
  assert.equal(second.exchanges.length, 1, 'no retry: the server knows the hash');
  const [hit] = second.exchanges;
  assert.equal(hit.method, hashedMethod);
  assert.equal(sent(hit).query, undefined, 'the hash alone, no document');
  assert.equal(sent(hit).extensions.persistedQuery.sha256Hash, hash);
  assert.deepEqual(sent(hit).variables, variables);
  assert.equal(hit.response.errors, undefined, JSON.stringify(hit.response.errors));
  assert.deepEqual(hit.response.data, retry.response.data);
  if (useGETForHashedQueries) {
    assert.equal(hit.url.searchParams.get('operationName'), query.definitions[0].name.value);
    // A GET by hash is what a CDN can keep: catalog data, anonymous.
    assert.match(hit.cacheControl, /^public, max-age=\d+$/);
  }
}

test('APQ round trip over POST with Apollo Client', async () => {
  await roundTrip({ useGETForHashedQueries: false });
});

test('APQ round trip with useGETForHashedQueries (the retry is a POST)', async () => {
  await roundTrip({ useGETForHashedQueries: true });
});

test('APQ round trip over GET under application/graphql-response+json (a 400 miss)', async () => {
  // What Apollo Client 4 and other spec-following clients ask for.
  await roundTrip({
    useGETForHashedQueries: true,
    headers: { accept: 'application/graphql-response+json, application/json;q=0.9' },
  });
});
