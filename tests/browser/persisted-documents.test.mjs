// GraphiQL's "Persisted documents" plugin as a frontend developer uses it: an
// operator registers the workloads' manifest, the developer opens the plugin,
// refreshes it, sees the three documents, filters, opens Catalog in a new
// tab, fills in its variable and runs it by id, and reads the result pane.
// The request the browser sent must be what a production client sends:
// {documentId, variables}, no text.
//
// COMMERCE_GRAPH_URL: the running server (e.g. http://127.0.0.1:4567).
// COMMERCE_GRAPH_BIN: its binary, to mint an admin token with the server's
//   secret (COMMERCE_GRAPH_JWT_SECRET must be the server's too).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { closeWithScreenshot, editorText, openPage } from './chromium.mjs';

const base = process.env.COMMERCE_GRAPH_URL;
const bin = process.env.COMMERCE_GRAPH_BIN;
const WORKLOADS = new URL('../../persisted-queries/workloads.json', import.meta.url);

async function post(body, headers = {}) {
  const response = await fetch(`${base}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  return response.json();
}

async function register(manifest) {
  const admin = execFileSync(bin, ['token', '--admin'], { encoding: 'utf8' }).trim();
  const response = await fetch(`${base}/admin/persisted-queries`, {
    method: 'POST',
    headers: { authorization: `Bearer ${admin}` },
    body: manifest,
  });
  assert.equal(response.status, 200, await response.text());
}

async function listed() {
  const response = await fetch(`${base}/graphiql/persisted-documents`);
  assert.equal(response.status, 200);
  return (await response.json()).documents;
}

const documentNames = (page) => page.locator('.persisted-document > button > div:first-child').allTextContents();

test('a registered document is opened from the plugin and runs by id', async () => {
  assert.ok(base && bin, 'set COMMERCE_GRAPH_URL and COMMERCE_GRAPH_BIN');
  const manifest = await readFile(WORKLOADS, 'utf8');
  const catalog = JSON.parse(manifest).operations.find((op) => op.name === 'Catalog');
  const categories = (await post({ query: '{ categories { id } }' })).data.categories;
  const category = categories[0].id;

  const browser = await openPage(base);
  const { page, foreign, problems } = browser;
  const sent = [];
  page.on('request', (request) => {
    if (request.method() === 'POST' && new URL(request.url()).pathname === '/graphql') {
      sent.push({ body: JSON.parse(request.postData()), headers: request.headers() });
    }
  });
  try {
    await page.goto(`${base}/graphql`, { waitUntil: 'load' });
    await page.locator('.graphiql-query-editor .CodeMirror').first().waitFor({ timeout: 30_000 });
    await page.getByRole('button', { name: 'Show Persisted documents' }).click();
    const status = page.locator('.persisted-documents-status');
    if ((await listed()).length === 0) {
      await status.filter({ hasText: 'No documents are registered' }).waitFor();
    }

    // The operator registers the manifest; a refresh shows it.
    await register(manifest);
    // What the server answers a production client that sends Catalog's id.
    const expected = await post({ documentId: catalog.id, variables: { c: category } });
    assert.equal(expected.errors, undefined);
    await page.getByRole('button', { name: 'Refresh the list' }).click();
    await page.locator('.persisted-document').nth(2).waitFor();
    assert.deepEqual(await documentNames(page), ['AllOrders', 'Catalog', 'ProductPage']);
    const catalogCost = (await listed()).find((d) => d.id === catalog.id).cost;
    const catalogItem = page.locator('.persisted-document', { hasText: 'Catalog' });
    assert.equal(
      (await catalogItem.locator('button > div').nth(1).textContent()).trim(),
      `query · all clients · cost ${catalogCost}`
    );

    await page.getByRole('searchbox', { name: 'Filter the documents' }).fill('catal');
    assert.deepEqual(await documentNames(page), ['Catalog']);

    // Opening it makes a second tab holding exactly the registered text, and
    // a variables object to fill in.
    await catalogItem.locator('button').first().click();
    await page.locator('.graphiql-tab', { hasText: 'Catalog' }).waitFor();
    assert.equal(await page.locator('.graphiql-tab').count(), 2);
    assert.equal(await editorText(page, '.graphiql-query-editor'), catalog.body);
    await page.getByRole('button', { name: 'Variables' }).click();
    assert.deepEqual(JSON.parse(await editorText(page, '.graphiql-editor-tool')), { c: null });

    // Fill in the category, as a person types it.
    await page.locator('.graphiql-editor-tool .CodeMirror').first().click();
    await page.keyboard.press('Control+A');
    await page.keyboard.press('Delete');
    await page.keyboard.type(`{"c": "${category}"}`);
    const typed = await editorText(page, '.graphiql-editor-tool');
    assert.deepEqual(JSON.parse(typed), { c: category }, typed);

    const run = catalogItem.getByRole('button', { name: 'Run by id' });
    await run.waitFor();
    sent.length = 0;
    await run.click();
    await page.waitForFunction(
      () => {
        const cm = document.querySelector('.graphiql-response .CodeMirror');
        return cm && cm.CodeMirror.getValue().includes('"products"');
      },
      null,
      { timeout: 30_000 }
    );
    const shown = JSON.parse(await editorText(page, '.graphiql-response'));
    assert.deepEqual(shown, expected);
    assert.deepEqual(
      sent.map((request) => request.body),
      [{ documentId: catalog.id, variables: { c: category } }],
      'Run by id sends the id and the variables, not the text'
    );
    assert.equal(sent[0].headers['apollographql-client-name'], undefined);

    assert.deepEqual(foreign, [], 'requests to other hosts');
    assert.deepEqual(problems, [], 'console errors');
  } finally {
    await closeWithScreenshot(browser, 'persisted-documents');
  }
});
