// The chat page end to end: the real loopchat-server serves it at / and
// speaks WebSocket at /ws; two browser pages (Debian's Chromium) and one
// raw TCP user (like `nc`) chat in #lobby; a page moves to #rust; a hostile
// line shows as text; the server stops and starts again on the same port
// and the pages log in again by themselves. Run from the repository:
//   cargo build --release
//   cd tests/browser && npm ci
//   LOOPCHAT_SERVER=target/release/loopchat-server node --test tests/browser/chat.mjs
//
// Environment:
//   LOOPCHAT_SERVER            the server binary (default target/debug/loopchat-server),
//                              relative to the repository or absolute
//   LOOPCHAT_SKIP_SERVER_TEST  set: skip (for a server that does not serve the page yet)
//   LOOPCHAT_BRIDGE=1          development only: the test serves the page and /ws
//                              itself (Playwright routing) and carries each WebSocket
//                              line over a TCP connection to the server, for a server
//                              that speaks only raw TCP lines
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, openSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import {
  ROOT, SHOTS, CSP, launchBrowser, pageFile, watchForTrouble, waitUntil,
  waitForLine, logLines, userList, screenshot,
} from './lib.mjs';

const SERVER = path.resolve(ROOT, process.env.LOOPCHAT_SERVER || 'target/debug/loopchat-server');
const SKIP = process.env.LOOPCHAT_SKIP_SERVER_TEST ? 'LOOPCHAT_SKIP_SERVER_TEST is set' : false;
const BRIDGE = process.env.LOOPCHAT_BRIDGE === '1';
const EVIL = '<img src=x onerror=alert(1)>';

// ---- The server -------------------------------------------------------------

/**
 * Starts the server on `listen` (port 0: any free one) and reads the port
 * from its first line, `listening on 127.0.0.1:PORT` (as tests/common/mod.rs
 * does). Its log goes to target/browser/server.log.
 */
async function startServer(listen = '127.0.0.1:0', extra = [], lines = 1) {
  mkdirSync(SHOTS, { recursive: true });
  const log = openSync(path.join(SHOTS, 'server.log'), 'a');
  const child = spawn(SERVER, ['--listen', listen, ...extra], { stdio: ['ignore', 'pipe', log] });
  const first = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${SERVER}: no "listening on" line in 10 s`)), 10_000);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const got = out.split('\n');
      if (got.length > lines) { clearTimeout(timer); resolve(got.slice(0, lines).join('\n')); }
    });
    child.on('error', (e) => { clearTimeout(timer); reject(e); });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`${SERVER} exited (${code}) before listening; see target/browser/server.log`)); });
  });
  const m = first.match(/^listening on (\S+):(\d+)$/m);
  assert.ok(m, `unexpected first line ${JSON.stringify(first)}`);
  const tls = first.match(/^tls listening on (\S+):(\d+)$/m);
  child.stdout.resume(); // keep reading, so later lines never block it
  return { child, host: m[1], port: Number(m[2]), tlsPort: tls ? Number(tls[2]) : null };
}

/** The same port again: retried for a while, in case it is not free yet. */
async function restartServer(port) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      return await startServer(`127.0.0.1:${port}`);
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

/** SIGTERM (the server tells everyone and drains for up to 2 s), then SIGKILL. */
async function stopServer(server) {
  const { child } = server;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}

// ---- A raw TCP user, like nc ------------------------------------------------

class LineClient {
  constructor(port) {
    this.lines = [];
    this.seen = 0; // lines before this one were already expected
    this.closed = false;
    this.socket = net.connect(port, '127.0.0.1');
    this.socket.setEncoding('utf8');
    let partial = '';
    this.socket.on('data', (chunk) => {
      const parts = (partial + chunk).split('\n');
      partial = parts.pop();
      this.lines.push(...parts.map((l) => l.replace(/\r$/, '')));
    });
    this.socket.on('close', () => { this.closed = true; });
    this.socket.on('error', () => {});
  }

  send(line) {
    this.socket.write(`${line}\n`);
  }

  /** Waits for a line matching `want` (string: exact, RegExp: match) after the last one found. */
  async expect(want, ms = 10_000) {
    const matches = (l) => (typeof want === 'string' ? l === want : want.test(l));
    const i = await waitUntil(() => {
      const k = this.lines.findIndex((l, n) => n >= this.seen && matches(l));
      return k >= 0 ? k + 1 : 0;
    }, ms, `nc line ${want} (got: ${JSON.stringify(this.lines.slice(this.seen))})`);
    this.seen = i;
    return this.lines[i - 1];
  }

  /** Joins as `nick`: the name goes first, like tests/common/mod.rs's join. */
  async join(nick) {
    this.send(nick);
    await this.expect('* Welcome to loopchat! What shall I call you?');
    await this.expect(new RegExp(`^\\* Welcome, ${nick}! `));
  }

  close() {
    this.socket.destroy();
  }
}

// ---- Development bridge (LOOPCHAT_BRIDGE=1) ----------------------------------

/** Serves the page's files and carries /ws over TCP lines, inside the browser context. */
async function bridgeContext(context, port) {
  const origin = `http://127.0.0.1:${port}`;
  await context.route(`${origin}/**`, async (route) => {
    const file = await pageFile(new URL(route.request().url()).pathname);
    if (!file) return route.fulfill({ status: 404, body: 'not found' });
    return route.fulfill({
      body: file.body,
      headers: { 'content-type': file.contentType, 'content-security-policy': CSP },
    });
  });
  await context.routeWebSocket(`ws://127.0.0.1:${port}/ws`, (ws) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.setEncoding('utf8');
    let partial = '';
    socket.on('data', (chunk) => {
      const parts = (partial + chunk).split('\n');
      partial = parts.pop();
      for (const line of parts) ws.send(line.replace(/\r$/, ''));
    });
    socket.on('close', () => ws.close({ code: 1001 }).catch(() => {}));
    socket.on('error', () => {});
    ws.onMessage((message) => socket.write(`${message}\n`));
    ws.onClose(() => socket.destroy());
  });
}

// ---- The test ---------------------------------------------------------------

const cleanups = [];
after(async () => {
  for (const clean of cleanups.reverse()) await clean().catch(() => {});
});

/** A page in its own browser context (own profile and sessionStorage), logged in as `nick`. */
async function openChat(browser, port, nick, viewport, scheme = 'http') {
  const context = await browser.newContext({ viewport });
  if (BRIDGE) await bridgeContext(context, port);
  const page = await context.newPage();
  const trouble = watchForTrouble(page, nick);
  await page.goto(`${scheme}://127.0.0.1:${port}/`, { timeout: 10_000 });
  await page.locator('#nick').fill(nick);
  await page.locator('#nick').press('Enter');
  await waitForLine(page, `* Welcome, ${nick}! `);
  await page.locator('#line').waitFor({ state: 'visible', timeout: 5_000 });
  return { page, trouble };
}

async function say(page, line) {
  await page.locator('#line').fill(line);
  await page.locator('#line').press('Enter');
}

const count = async (page, text) => (await logLines(page)).filter((l) => l.includes(text)).length;

test('two pages and an nc user chat, switch rooms, survive a server restart', { skip: SKIP, timeout: 60_000 }, async (t) => {
  let server = await startServer();
  cleanups.push(() => stopServer(server));
  const { port } = server;
  const browser = await launchBrowser();
  cleanups.push(() => browser.close());

  const alice = await openChat(browser, port, 'alice', { width: 1000, height: 640 });
  const bob = await openChat(browser, port, 'bob', { width: 1000, height: 640 });
  const carol = new LineClient(port);
  cleanups.push(async () => carol.close());
  await carol.join('carol');

  await t.test('all three see each other in #lobby', async () => {
    await waitForLine(alice.page, '* carol has entered the room');
    await waitForLine(bob.page, '* carol has entered the room');
    await say(alice.page, 'hello from the browser');
    await waitForLine(bob.page, 'alice: hello from the browser');
    await carol.expect('[alice] hello from the browser');
    carol.send('hello from nc');
    await waitForLine(alice.page, 'carol: hello from nc');
    await waitForLine(bob.page, 'carol: hello from nc');
    await say(bob.page, '/me waves');
    await carol.expect('~ bob waves');
    await waitForLine(alice.page, '* bob waves');
    await say(alice.page, '/msg carol a private word');
    await carol.expect('(alice) a private word');
    await waitForLine(alice.page, '→ carol (private): a private word');
    assert.deepEqual(await userList(alice.page), ['alice', 'bob', 'carol']);
    assert.deepEqual(await userList(bob.page), ['alice', 'bob', 'carol']);
    await alice.page.locator('#rooms button', { hasText: '#lobby' }).waitFor({ timeout: 5_000 });
  });

  await t.test('a hostile line shows as text', async () => {
    carol.send(EVIL);
    await say(alice.page, EVIL);
    await carol.expect(`[alice] ${EVIL}`);
    for (const { page } of [alice, bob]) {
      await waitForLine(page, `carol: ${EVIL}`);
      assert.equal(await page.locator('#log img').count(), 0);
    }
    await waitForLine(bob.page, `alice: ${EVIL}`);
    await bob.page.waitForTimeout(300); // an onerror would have fired by now
  });

  await t.test('a page switches rooms', async () => {
    await say(bob.page, '/join #rust');
    await waitForLine(bob.page, '* You are now in #rust.');
    assert.equal(await bob.page.locator('#room').textContent(), '#rust');
    assert.deepEqual(await userList(bob.page), ['bob']);
    await bob.page.locator('#rooms button[aria-current="true"]', { hasText: '#rust' }).waitFor({ timeout: 5_000 });
    await waitForLine(alice.page, '* bob has left the room (moved to #rust)');
    await carol.expect('* bob has left the room (moved to #rust)');
    assert.deepEqual(await userList(alice.page), ['alice', 'carol']);
    carol.send('/rooms');
    await carol.expect('* Rooms: #lobby (2), #rust (1)');
  });

  await t.test('the pages reconnect and log in again after a restart', async () => {
    await stopServer(server);
    for (const { page } of [alice, bob]) {
      await page.locator('#status', { hasText: 'Reconnecting' }).waitFor({ timeout: 10_000 });
    }
    server = await restartServer(port);
    for (const [{ page }, nick] of [[alice, 'alice'], [bob, 'bob']]) {
      await waitUntil(async () => (await count(page, `* Welcome, ${nick}! `)) === 2, 20_000, `${nick} logged in again`);
      await page.locator('#status', { hasText: `Connected as ${nick}` }).waitFor({ timeout: 5_000 });
    }
    await waitUntil(async () => (await count(bob.page, '* You are now in #rust.')) === 2, 10_000, 'bob back in #rust');
    assert.equal(await bob.page.locator('#room').textContent(), '#rust');
    assert.equal(await alice.page.locator('#room').textContent(), '#lobby');

    const dave = new LineClient(port);
    cleanups.push(async () => dave.close());
    await dave.join('dave');
    dave.send('/rooms');
    await dave.expect('* Rooms: #lobby (2), #rust (1)');
    dave.send('back again?');
    await waitForLine(alice.page, 'dave: back again?');
    await say(alice.page, 'yes, by myself');
    await dave.expect('[alice] yes, by myself');
    await alice.page.locator('#rooms [aria-current] .count', { hasText: '2' }).waitFor({ timeout: 5_000 });
  });

  const shot = await screenshot(alice.page, 'chat.png');
  t.diagnostic(`screenshot: ${path.relative(ROOT, shot)}`);
  assert.deepEqual([...alice.trouble, ...bob.trouble], []);
});

// Issue 15: the page over HTTPS, its WebSocket over wss://. The certificate
// is the tests' self-signed one (tests/tls_support/), so Chromium runs with
// --ignore-certificate-errors. One page comes through --tls-listen, one
// through the main port (a first byte 0x16 is taken as TLS there), and an
// nc user on the main port in plain text hears them both.
test('the page over HTTPS and wss://, on the TLS port and the main port', { skip: SKIP || (BRIDGE && 'the bridge speaks no TLS'), timeout: 60_000 }, async () => {
  const support = path.join(ROOT, 'tests/tls_support');
  const server = await startServer('127.0.0.1:0', [
    '--tls-cert', path.join(support, 'test-cert.pem'),
    '--tls-key', path.join(support, 'test-key.pem'),
    '--tls-listen', '127.0.0.1:0',
  ], 2);
  cleanups.push(() => stopServer(server));
  assert.ok(server.tlsPort, 'a "tls listening on" line');
  const browser = await launchBrowser(['--ignore-certificate-errors']);
  cleanups.push(() => browser.close());

  const erin = await openChat(browser, server.tlsPort, 'erin', { width: 900, height: 600 }, 'https');
  const frank = await openChat(browser, server.port, 'frank', { width: 900, height: 600 }, 'https');
  for (const { page } of [erin, frank]) {
    assert.equal(await page.evaluate(() => location.protocol), 'https:');
  }
  const gina = new LineClient(server.port);
  cleanups.push(async () => gina.close());
  await gina.join('gina');

  await say(erin.page, 'hello over wss');
  await waitForLine(frank.page, 'erin: hello over wss');
  await gina.expect('[erin] hello over wss');
  gina.send('hello in plain text');
  await waitForLine(erin.page, 'gina: hello in plain text');
  await waitForLine(frank.page, 'gina: hello in plain text');
  assert.deepEqual(await userList(frank.page), ['erin', 'frank', 'gina']);
  assert.deepEqual([...erin.trouble, ...frank.trouble], []);
  await stopServer(server);
});
