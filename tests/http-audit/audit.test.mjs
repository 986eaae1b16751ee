// graphql-http's GraphQL-over-HTTP audits against a running commerce-graph
// (COMMERCE_GRAPH_URL, started by .ci/http-audit.sh with its defaults, CSRF
// prevention on).
//
// Two clients run the same audits:
// - a bare `fetch`, as the audit ships: it sends GETs with no header that
//   forces a CORS preflight, so CSRF prevention refuses them (three MAYs);
// - the same `fetch` adding `x-graphql-csrf: 1`, as a browser client of this
//   server must (Apollo Client's `apollo-require-preflight` works the same).
//
// Every MUST has to pass with both (a failed MUST is an `error`); SHOULD
// failures are printed as warnings. The audits allowed to fail are listed here
// by id, so a fixed one and a new failure both show as a change to review.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { serverAudits } from 'graphql-http';

const base = process.env.COMMERCE_GRAPH_URL;
if (!base) {
  throw new Error('COMMERCE_GRAPH_URL is not set: run .ci/http-audit.sh');
}
const url = `${base}/graphql`;

// GETs without a preflight-forcing header are refused as possible CSRF.
const REFUSED_AS_CSRF = ['5A70', 'D6D5', '6A70'];

const withCsrfHeader = (input, init = {}) => {
  const headers = new Headers(init.headers);
  headers.set('x-graphql-csrf', '1');
  return fetch(input, { ...init, headers });
};

async function run(fetchFn) {
  const audits = serverAudits({ url, fetchFn });
  // One at a time: the figures stay readable and the server is not the
  // bottleneck of a 61-request suite.
  const results = [];
  for (const audit of audits) {
    results.push(await audit.fn());
  }
  return results;
}

function report(label, results) {
  const passed = results.filter((r) => r.status === 'ok');
  console.log(`\n${label}: ${passed.length}/${results.length} audits pass`);
  for (const r of results) {
    // ok, notice (a MAY failed), warn (a SHOULD failed), error (a MUST failed)
    const mark = r.status.padEnd(6);
    console.log(`  ${mark} ${r.id} ${r.name}${r.status === 'ok' ? '' : `\n         ${r.reason}`}`);
  }
  const warnings = results.filter((r) => r.status === 'warn');
  if (warnings.length > 0) {
    console.log(`  SHOULD warnings: ${warnings.map((r) => r.id).join(', ')}`);
  }
  return results.filter((r) => r.status !== 'ok');
}

const mustFailures = (failed) =>
  failed.filter((r) => r.status === 'error').map((r) => `${r.id} ${r.name}: ${r.reason}`);

test('every audit passes for a client that sends the CSRF header', async () => {
  const failed = report('fetch with x-graphql-csrf', await run(withCsrfHeader));
  assert.deepEqual(mustFailures(failed), []);
  // Every SHOULD and MAY passes too (the README says so).
  assert.deepEqual(
    failed.map((r) => `${r.id} ${r.name}: ${r.reason}`),
    [],
  );
});

test('a bare fetch passes every MUST; only CSRF-refused GETs fail', async () => {
  const failed = report('bare fetch', await run(fetch));
  assert.deepEqual(mustFailures(failed), []);
  assert.deepEqual(failed.map((r) => r.id).sort(), [...REFUSED_AS_CSRF].sort());
  for (const r of failed) {
    const body = await r.response.clone().json();
    assert.equal(body.errors?.[0]?.extensions?.code, 'CSRF_PREVENTED', r.id);
  }
});
