// Shared by the browser tests: launching Debian's Chromium, the page's
// files and headers, and bounded waits.
import { chromium } from 'playwright-core';
import { readFile, mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const SHOTS = path.join(ROOT, 'target/browser');

// The Content-Security-Policy the server sends with the page (docs/web.md).
// `require-trusted-types-for 'script'` makes any innerHTML assignment throw,
// so the page's "textContent only" rule is enforced by the browser too.
export const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  'img-src data:',
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
  "require-trusted-types-for 'script'",
  "trusted-types 'none'",
].join('; ');

// The page's files, as the server serves them.
export const FILES = {
  '/': ['web/index.html', 'text/html; charset=utf-8'],
  '/app.js': ['web/app.js', 'text/javascript; charset=utf-8'],
  '/style.css': ['web/style.css', 'text/css; charset=utf-8'],
};

/** Debian's Chromium, headless, with nothing of its own to fetch. */
export async function launchBrowser(extraArgs = []) {
  // launch() gives every context a new, empty profile (--user-data-dir in a
  // fresh temporary folder), removed on close.
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [
      '--no-sandbox', // we run as root in CI
      '--disable-gpu',
      '--no-first-run',
      '--disable-background-networking', // this machine has no network:
      '--disable-component-update',      // without these, Chromium keeps
      '--disable-sync',                  // trying to reach Google
      ...extraArgs,
    ],
    timeout: 20_000,
  });
}

/** The page's file for a URL path, or null. */
export async function pageFile(pathname) {
  const entry = FILES[pathname];
  if (!entry) return null;
  return { body: await readFile(path.join(ROOT, entry[0])), contentType: entry[1] };
}

/**
 * Records what would show a broken page: script errors, console errors, CSP
 * violations and dialogs (an alert() would mean injected script ran).
 */
export function watchForTrouble(page, label) {
  const trouble = [];
  page.on('pageerror', (e) => trouble.push(`${label}: page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') trouble.push(`${label}: console error: ${m.text()}`);
  });
  page.on('dialog', (d) => {
    trouble.push(`${label}: dialog (${d.type()}): ${d.message()}`);
    d.dismiss().catch(() => {});
  });
  return trouble;
}

/** Polls `cond` (sync or async) until it is truthy; throws after `ms`. */
export async function waitUntil(cond, ms, what) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await cond();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The log's lines as the reader sees them. */
export async function logLines(page) {
  return page.locator('#log li').allTextContents();
}

/** Waits for a line of the log that contains `text`. */
export async function waitForLine(page, text, ms = 10_000) {
  await page.locator('#log li', { hasText: text }).last().waitFor({ timeout: ms });
}

/** The names in the user list (without the " (you)" mark). */
export async function userList(page) {
  const names = await page.locator('#users button').allTextContents();
  return names.map((n) => n.replace(/ \(you\)$/, ''));
}

export async function screenshot(page, name) {
  await mkdir(SHOTS, { recursive: true });
  const file = path.join(SHOTS, name);
  await page.screenshot({ path: file });
  return file;
}
