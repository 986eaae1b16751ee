// A subscription in GraphiQL as a frontend developer runs one: type it, press
// run, change the price from elsewhere (a mutation over HTTP), and watch the
// new price appear in the result pane. The subscription travels over a
// WebSocket to the same /graphql (graphql-transport-ws), nothing from a CDN.
//
// COMMERCE_GRAPH_URL: the running server (e.g. http://127.0.0.1:4567).
// COMMERCE_GRAPH_BIN: its binary, to mint an admin token with the server's
//   secret (COMMERCE_GRAPH_JWT_SECRET must be the server's too).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeWithScreenshot, openPage, typeQuery } from './chromium.mjs';

const base = process.env.COMMERCE_GRAPH_URL;
const bin = process.env.COMMERCE_GRAPH_BIN;
const SUBSCRIPTION = 'subscription { productUpdated(id: "15") { id price { cents } } }';

async function setPrice(admin, cents) {
  const response = await fetch(`${base}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${admin}` },
    body: JSON.stringify({
      query: 'mutation($cents: Int!) { setProductPrice(productId: "15", cents: $cents) { id } }',
      variables: { cents },
    }),
  });
  const body = await response.json();
  assert.equal(body.errors, undefined, JSON.stringify(body.errors));
}

const shownResult = (page) =>
  page.evaluate(() => {
    const cm = document.querySelector('.graphiql-response .CodeMirror');
    return cm ? cm.CodeMirror.getValue() : '';
  });

test('GraphiQL runs a subscription over the WebSocket and shows the event of a mutation', async () => {
  assert.ok(base && bin, 'set COMMERCE_GRAPH_URL and COMMERCE_GRAPH_BIN');
  const admin = execFileSync(bin, ['token', '--admin'], { encoding: 'utf8' }).trim();

  const browser = await openPage(base);
  const { page, foreign, problems } = browser;
  const sockets = [];
  page.on('websocket', (socket) => sockets.push(socket.url()));
  try {
    await typeQuery(page, base, SUBSCRIPTION);
    await page.locator('.graphiql-execute-button').click();

    // GraphiQL does not show when the server has the subscription in
    // place: change the price until an event shows one of the prices set.
    const set = [];
    let shown = '';
    for (let i = 0; i < 60 && !shown.includes('"productUpdated"'); i++) {
      const cents = 5000 + Math.floor(Math.random() * 4000);
      set.push(cents);
      await setPrice(admin, cents);
      await new Promise((resolve) => setTimeout(resolve, 250));
      shown = await shownResult(page);
    }
    assert.ok(shown.includes('"productUpdated"'), `no event shown: ${shown}`);
    const result = JSON.parse(shown);
    assert.equal(result.data.productUpdated.id, '15');
    assert.ok(set.includes(result.data.productUpdated.price.cents), shown);

    const wsUrl = `${base.replace(/^http/, 'ws')}/graphql`;
    assert.deepEqual([...new Set(sockets)], [wsUrl], 'the WebSockets GraphiQL opened');
    assert.deepEqual(foreign, [], 'requests to other hosts');
    assert.deepEqual(problems, [], 'console errors');

    // Stop it: the run button became a stop button.
    await page.locator('.graphiql-execute-button').click();
  } finally {
    await closeWithScreenshot(browser, 'graphiql-subscription');
  }
});
