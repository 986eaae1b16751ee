// What every browser test shares: Debian's Chromium, launched so that it
// does not call home, a page that refuses (and records) anything not from
// the server under test, and a screenshot of what a person would have seen.
//
// CHROMIUM: the browser binary (default /usr/bin/chromium, Debian's package).

import { mkdir } from 'node:fs/promises';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

// A page on a fresh browser. `foreign` lists the requests to other hosts
// (refused: GraphiQL must not need a CDN), `problems` the console errors
// and uncaught exceptions.
export async function openPage(base) {
  const origin = new URL(base).origin;
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
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const foreign = [];
  const problems = [];
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
  return { browser, page, foreign, problems };
}

// Saves target/browser/NAME.png and closes the browser, pass or fail.
export async function closeWithScreenshot({ browser, page }, name) {
  const shots = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'target', 'browser');
  await mkdir(shots, { recursive: true });
  await page.screenshot({ path: join(shots, `${name}.png`) }).catch(() => {});
  await browser.close();
}

// The text of the CodeMirror editor inside `selector` (GraphiQL 3's editors).
export function editorText(page, selector) {
  return page.evaluate(
    (selector) => document.querySelector(`${selector} .CodeMirror`).CodeMirror.getValue(),
    selector
  );
}

// Opens GraphiQL at BASE/graphql and types QUERY into its query editor like
// a user: select everything, replace it.
export async function typeQuery(page, base, query) {
  await page.goto(`${base}/graphql`, { waitUntil: 'load' });
  const editor = page.locator('.graphiql-query-editor .CodeMirror').first();
  await editor.waitFor({ timeout: 30_000 });
  await editor.click();
  await page.keyboard.press('Control+A');
  await page.keyboard.press('Delete');
  await page.keyboard.type(query);
}
