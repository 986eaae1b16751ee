// GraphiQL as a person uses it: open /graphql in a real (headless) Chromium,
// type a query into the editor, press run, read the result pane. The expected
// data comes from the server itself, fetched with a plain POST.
//
// COMMERCE_GRAPH_URL: the running server (e.g. http://127.0.0.1:4567).
// CHROMIUM: the browser binary (default /usr/bin/chromium, Debian's package).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const base = process.env.COMMERCE_GRAPH_URL;
const QUERY = '{ categories { name slug } }';

test('GraphiQL loads from the binary and runs a typed query', async () => {
  assert.ok(base, 'set COMMERCE_GRAPH_URL to the running server');
  const origin = new URL(base).origin;

  const direct = await fetch(`${base}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query: QUERY }),
  });
  const expected = (await direct.json()).data.categories;
  assert.ok(expected.length > 0, 'the server has categories');

  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    // A fresh profile is Playwright's default. The networking flags keep
    // Chromium from calling home on a machine without internet access.
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  const page = await browser.newPage();
  try {
    const foreign = [];
    const problems = [];
    // Anything not from this server is refused and recorded: GraphiQL must
    // not need a CDN.
    await page.route('**/*', (route) => {
      const url = route.request().url();
      if (url.startsWith('data:') || new URL(url).origin === origin) return route.continue();
      foreign.push(url);
      return route.abort();
    });
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(message.text());
    });
    page.on('pageerror', (error) => problems.push(String(error)));

    await page.goto(`${base}/graphql`, { waitUntil: 'load' });
    const editor = page.locator('.graphiql-query-editor .CodeMirror').first();
    await editor.waitFor({ timeout: 30_000 });

    // Type the query like a user: select everything, replace it.
    await editor.click();
    await page.keyboard.press('Control+A');
    await page.keyboard.press('Delete');
    await page.keyboard.type(QUERY);
    const typed = await page.evaluate(
      () => document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.getValue()
    );
    assert.equal(typed.replace(/\s+/g, ' ').trim(), QUERY);

    await page.locator('.graphiql-execute-button').click();
    const response = page.locator('.graphiql-response .CodeMirror').first();
    await page.waitForFunction(
      () => {
        const cm = document.querySelector('.graphiql-response .CodeMirror');
        return cm && cm.CodeMirror.getValue().includes('"categories"');
      },
      null,
      { timeout: 30_000 }
    );
    const text = await response.evaluate((element) => element.CodeMirror.getValue());
    const shown = JSON.parse(text);
    assert.deepEqual(shown.data.categories, expected);

    assert.deepEqual(foreign, [], 'requests to other hosts');
    assert.deepEqual(problems, [], 'console errors');
  } finally {
    // The screenshot shows what a person would have seen, pass or fail.
    const shots = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'target', 'browser');
    await mkdir(shots, { recursive: true });
    await page.screenshot({ path: join(shots, 'graphiql.png') }).catch(() => {});
    await browser.close();
  }
});
