// GraphiQL as a person uses it: open /graphql in a real (headless) Chromium,
// type a query into the editor, press run, read the result pane. The expected
// data comes from the server itself, fetched with a plain POST.
//
// COMMERCE_GRAPH_URL: the running server (e.g. http://127.0.0.1:4567).
// CHROMIUM: the browser binary (default /usr/bin/chromium, Debian's package).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeWithScreenshot, editorText, openPage, typeQuery } from './chromium.mjs';

const base = process.env.COMMERCE_GRAPH_URL;
const QUERY = '{ categories { name slug } }';

test('GraphiQL loads from the binary and runs a typed query', async () => {
  assert.ok(base, 'set COMMERCE_GRAPH_URL to the running server');

  const direct = await fetch(`${base}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query: QUERY }),
  });
  const expected = (await direct.json()).data.categories;
  assert.ok(expected.length > 0, 'the server has categories');

  const browser = await openPage(base);
  const { page, foreign, problems } = browser;
  try {
    await typeQuery(page, base, QUERY);
    const typed = await editorText(page, '.graphiql-query-editor');
    assert.equal(typed.replace(/\s+/g, ' ').trim(), QUERY);

    await page.locator('.graphiql-execute-button').click();
    await page.waitForFunction(
      () => {
        const cm = document.querySelector('.graphiql-response .CodeMirror');
        return cm && cm.CodeMirror.getValue().includes('"categories"');
      },
      null,
      { timeout: 30_000 }
    );
    const shown = JSON.parse(await editorText(page, '.graphiql-response'));
    assert.deepEqual(shown.data.categories, expected);

    assert.deepEqual(foreign, [], 'requests to other hosts');
    assert.deepEqual(problems, [], 'console errors');
  } finally {
    // The screenshot shows what a person would have seen, pass or fail.
    await closeWithScreenshot(browser, 'graphiql');
  }
});
