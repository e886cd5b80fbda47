// The chat page against a fake server, in Debian's Chromium: needs no
// loopchat-server. The page's files are served by Playwright's request
// routing, and /ws by a small fake of the line protocol (docs/protocol.md)
// in this file, which also replays lines of every kind. Run:
//   cd tests/browser && npm ci && node --test page.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  launchBrowser, pageFile, CSP, watchForTrouble, waitUntil, waitForLine,
  logLines, userList, screenshot,
} from './lib.mjs';

const ORIGIN = 'http://loopchat.test';
const WS_URL = 'ws://loopchat.test/ws';
const GREETING = '* Welcome to loopchat! What shall I call you?';
const NICK = /^[A-Za-z0-9_\-[\]{}|^]{1,32}$/;

/**
 * Just enough of loopchat's line dialect to log in, move between rooms and
 * answer /who and /rooms. The other users are only names; a test sends
 * their lines with `sendAll`.
 */
class FakeServer {
  constructor({ accounts = false, others = ['alice', 'carol'] } = {}) {
    this.accounts = accounts;
    this.password = 'correct horse';
    this.others = others;
    this.connections = [];   // every connection, in order
    this.received = [];      // every line from the page: [connection number, line]
    this.refuse = 0;         // close this many new connections at once
  }

  async attach(context) {
    await context.route(`${ORIGIN}/**`, async (route) => {
      const file = await pageFile(new URL(route.request().url()).pathname);
      if (!file) return route.fulfill({ status: 404, body: 'not found' });
      return route.fulfill({
        status: 200,
        body: file.body,
        headers: {
          'content-type': file.contentType,
          'content-security-policy': CSP,
          'cache-control': 'no-cache',
        },
      });
    });
    await context.routeWebSocket(WS_URL, (ws) => this.accept(ws));
  }

  accept(ws) {
    const conn = { ws, n: this.connections.length, at: Date.now(), stage: 'naming', nick: '', room: '#lobby', open: true };
    this.connections.push(conn);
    ws.onClose(() => { conn.open = false; });
    if (this.refuse > 0) {
      this.refuse -= 1;
      conn.open = false;
      ws.close({ code: 1001 });
      return;
    }
    ws.onMessage((message) => this.lineFrom(conn, String(message)));
    ws.send(GREETING);
  }

  lineFrom(conn, line) {
    this.received.push([conn.n, line]);
    const say = (text) => conn.ws.send(text);
    if (conn.stage === 'naming') {
      if (!NICK.test(line)) return say(`! Invalid nickname: ' ' is not allowed in a nickname (use letters, digits and _-[]{}|^). Choose another.`);
      if (this.others.some((o) => o.toLowerCase() === line.toLowerCase())) return say(`! Nickname ${line} is taken. Choose another.`);
      conn.nick = line;
      if (this.accounts) {
        conn.stage = 'password';
        return say(`* Password for ${line}? (A new name is registered with the password you send now: at least 8 characters.)`);
      }
      return this.welcome(conn);
    }
    if (conn.stage === 'password') {
      if (line !== this.password) return say(`! Wrong password for ${conn.nick}. Try again (2 attempts left).`);
      return this.welcome(conn);
    }
    const [word, ...rest] = line.split(' ');
    switch (word.toLowerCase()) {
      case '/who': {
        const names = this.members(conn.room);
        return say(`* ${names.length} users online: ${names.join(', ')}`);
      }
      case '/rooms':
        return say(`* Rooms: ${this.roomList()}`);
      case '/join': {
        const room = rest[0];
        if (room.toLowerCase() === conn.room.toLowerCase()) return say(`! You are already in ${conn.room}.`);
        conn.room = room;
        say(`* The room contains: ${this.members(room).filter((n) => n !== conn.nick).join(', ')}`);
        return say(`* You are now in ${room}.`);
      }
      case '/quit':
        say('* Goodbye.');
        conn.open = false;
        return conn.ws.close();
      case '/msg':
        return say(`(-> ${rest[0]}) ${rest.slice(1).join(' ')}`);
      default:
        return undefined; // chat and /me: nothing comes back to the sender
    }
  }

  welcome(conn) {
    conn.stage = 'joined';
    const others = this.members('#lobby').filter((n) => n !== conn.nick);
    conn.ws.send(`* The room contains: ${others.join(', ')}`);
    conn.ws.send(`* Welcome, ${conn.nick}! ${others.length + 1} users online in #lobby. Type /help for commands.`);
  }

  /** The room's members: the fake others live in #lobby. */
  members(room) {
    const here = this.joined().filter((c) => c.room.toLowerCase() === room.toLowerCase()).map((c) => c.nick);
    return room === '#lobby' ? [...this.others, ...here] : here;
  }

  roomList() {
    const rooms = new Map([['#lobby', this.others.length]]);
    for (const c of this.joined()) rooms.set(c.room, (rooms.get(c.room) || 0) + 1);
    return [...rooms].map(([r, n]) => `${r} (${n})`).join(', ');
  }

  joined() {
    return this.connections.filter((c) => c.open && c.stage === 'joined');
  }

  /** Sends a line to every joined connection. */
  sendAll(line) {
    for (const c of this.joined()) c.ws.send(line);
  }

  /** Lines the page sent on its latest connection. */
  linesFromLatest() {
    const n = this.connections.length - 1;
    return this.received.filter(([k]) => k === n).map(([, l]) => l);
  }

  /** Closes every connection, as a server that stops would. */
  dropAll() {
    for (const c of this.connections.filter((k) => k.open)) {
      c.open = false;
      c.ws.close({ code: 1001 });
    }
  }
}

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

/** A new context (own profile and sessionStorage) on the fake server. */
async function openPage(fake, options = {}) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 640 }, ...options });
  await fake.attach(context);
  const page = await context.newPage();
  const trouble = watchForTrouble(page, 'page');
  await page.goto(`${ORIGIN}/`, { timeout: 10_000 });
  return { context, page, trouble };
}

/** Types a name in the login form and waits for the welcome. */
async function logIn(page, nick) {
  await page.locator('#nick').fill(nick);
  await page.locator('#nick').press('Enter');
  await page.locator('#chat-form').waitFor({ state: 'visible', timeout: 5_000 });
}

/** Types a line in the chat form; Enter sends it. */
async function say(page, line) {
  await page.locator('#line').fill(line);
  await page.locator('#line').press('Enter');
}

const T = { timeout: 30_000 };

test('logs in with the keyboard, shows every kind of line, keeps the lists', T, async () => {
  const fake = new FakeServer();
  const { context, page, trouble } = await openPage(fake);
  // Autofocused name field; the page does not connect before it has a name.
  assert.equal(await page.evaluate(() => document.activeElement.id), 'nick');
  assert.equal(fake.connections.length, 0);
  await page.keyboard.type('bob');
  await page.keyboard.press('Enter');
  await page.locator('#chat-form').waitFor({ timeout: 5_000 });
  assert.equal(await page.evaluate(() => document.activeElement.id), 'line');
  await waitForLine(page, GREETING);
  await waitForLine(page, '* Welcome, bob! 3 users online in #lobby.');
  assert.match(await page.locator('#status').textContent(), /Connected as bob/);
  assert.equal(await page.locator('#room').textContent(), '#lobby');
  assert.deepEqual(await userList(page), ['alice', 'carol', 'bob']);
  // The page asked for the room list by itself, and did not show the answer.
  await page.locator('#rooms button', { hasText: '#lobby' }).waitFor({ timeout: 5_000 });
  assert.ok(!(await logLines(page)).some((l) => l.includes('Rooms:')));

  // Every kind of server line.
  const lines = [
    '[alice] hello bob',
    '~ carol waves',
    '(alice) lunch?',
    '(alice) * alice winks',
    '(-> carol) sure',
    '14:02:11 [carol] a timestamped line',
    '* dave has entered the room',
    '! No such user: zed.',
    '* carol is now known as caroline',
    '* alice has left the room (quit: bye)',
  ];
  for (const l of lines) fake.sendAll(l);
  await waitForLine(page, 'alice has left the room');
  const kinds = await page.locator('#log li').evaluateAll((lis) => lis.map((li) => [li.className, li.textContent]));
  const kindOf = (text) => kinds.find(([, t]) => t.includes(text))?.[0];
  assert.equal(kindOf('hello bob'), 'chat');
  assert.equal(kindOf('carol waves'), 'action');
  assert.equal(kindOf('lunch?'), 'private');
  assert.equal(kindOf('alice winks'), 'private action');
  assert.equal(kindOf('sure'), 'private own');
  assert.equal(kindOf('a timestamped line'), 'chat');
  assert.equal(kindOf('No such user'), 'error');
  assert.equal(kindOf('dave has entered'), 'notice');
  // The server's own time is shown when it sends one.
  assert.match(kinds.find(([, t]) => t.includes('timestamped'))[1], /^14:02 carol: a timestamped line$/);
  assert.deepEqual(await userList(page), ['caroline', 'bob', 'dave']);

  // Own lines: chat and /me are shown at once (the server does not echo
  // them); /msg is shown when the server confirms it.
  await say(page, 'hi all');
  await say(page, '/me smiles');
  await say(page, '//slash');
  await say(page, '/msg dave psst');
  await waitForLine(page, 'psst');
  await waitUntil(() => fake.linesFromLatest().includes('/msg dave psst'), 5_000, 'the /msg line');
  const sent = fake.linesFromLatest().filter((l) => !['/rooms', '/who'].includes(l));
  assert.deepEqual(sent, ['bob', 'hi all', '/me smiles', '//slash', '/msg dave psst']);
  const texts = await logLines(page);
  assert.ok(texts.some((t) => /bob: hi all$/.test(t)), texts.join('\n'));
  assert.ok(texts.some((t) => /\* bob smiles$/.test(t)));
  assert.ok(texts.some((t) => /bob: \/slash$/.test(t)));
  assert.equal(texts.filter((t) => t.includes('psst')).length, 1);

  // A PING is answered, and not shown.
  fake.sendAll('* PING - send any line within 60 s to stay connected');
  await waitUntil(() => fake.linesFromLatest().includes('/pong'), 5_000, '/pong');
  assert.ok(!(await logLines(page)).some((l) => l.includes('PING')));

  // /who typed by the user is shown, and refreshes the list.
  await say(page, '/who');
  await waitForLine(page, 'users online: alice, carol, bob');
  assert.deepEqual(await userList(page), ['alice', 'carol', 'bob']);

  // A click on a name starts a private line.
  await page.locator('#users button', { hasText: 'alice' }).click();
  assert.equal(await page.locator('#line').inputValue(), '/msg alice ');

  // Switching rooms by clicking one, then with the join box.
  fake.others.push('zed');
  await page.locator('#line').fill('');
  await say(page, '/rooms');
  await waitForLine(page, '* Rooms: #lobby (4)');
  await page.locator('#join-name').fill('rust');
  await page.locator('#join-name').press('Enter');
  await waitForLine(page, 'You are now in #rust.');
  assert.equal(await page.locator('#room').textContent(), '#rust');
  assert.deepEqual(await userList(page), ['bob']);
  await page.locator('#rooms button[aria-current="true"]', { hasText: '#rust' }).waitFor({ timeout: 5_000 });
  await page.locator('#rooms button', { hasText: '#lobby' }).click();
  await waitForLine(page, 'You are now in #lobby.');
  assert.equal(await page.locator('#room').textContent(), '#lobby');
  assert.deepEqual(await userList(page), ['alice', 'carol', 'zed', 'bob']);

  await screenshot(page, 'page-light.png');
  assert.deepEqual(trouble, []);
  await context.close();
});

test('a hostile line shows as text: no element, no script, no dialog', T, async () => {
  const fake = new FakeServer({ others: ['mallory'] });
  const { context, page, trouble } = await openPage(fake);
  await logIn(page, 'bob');
  const evil = '<img src=x onerror=alert(1)>';
  fake.sendAll(`[mallory] ${evil}`);
  fake.sendAll(`~ mallory <script>alert(2)</script>`);
  fake.sendAll(`* 2 users online: mallory, <b>bob</b>`);
  fake.sendAll(`* Rooms: #lobby (2), #<i>x</i> (1)`);
  await waitForLine(page, evil);
  await page.locator('#rooms button', { hasText: '<i>x</i>' }).waitFor({ timeout: 5_000 });
  assert.equal(await page.locator('#log img, #log script, #log b, #users b, #rooms i').count(), 0);
  const text = await page.locator('#log li.chat .text').last().textContent();
  assert.equal(text, evil);
  await page.waitForTimeout(300); // an onerror would have fired by now
  assert.deepEqual(trouble, []);
  // The CSP's Trusted Types make any innerHTML assignment throw.
  const html = await page.evaluate(() => {
    try { document.createElement('div').innerHTML = '<b>x</b>'; return 'allowed'; } catch (e) { return e.name; }
  });
  assert.equal(html, 'TypeError');
  await context.close();
});

test('refusals are shown as the server says them; password when asked', T, async () => {
  const fake = new FakeServer({ accounts: true });
  const { context, page, trouble } = await openPage(fake);
  await page.locator('#nick').fill('alice');
  await page.locator('#nick').press('Enter');
  await waitForLine(page, '! Nickname alice is taken. Choose another.');
  assert.equal(await page.locator('#login-hint').textContent(), '! Nickname alice is taken. Choose another.');
  assert.ok(await page.locator('#login-form').isVisible());
  assert.equal(await page.locator('#password').isVisible(), false);
  // Another name on the same connection.
  await page.locator('#nick').fill('bob');
  await page.locator('#nick').press('Enter');
  await page.locator('#password').waitFor({ timeout: 5_000 });
  assert.equal(await page.evaluate(() => document.activeElement.id), 'password');
  await screenshot(page, 'page-password.png');
  await page.keyboard.type('wrong one');
  await page.keyboard.press('Enter');
  await waitForLine(page, '! Wrong password for bob. Try again (2 attempts left).');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'password');
  await page.keyboard.type('correct horse');
  await page.keyboard.press('Enter');
  await page.locator('#chat-form').waitFor({ timeout: 5_000 });
  assert.equal(fake.connections.length, 1);
  assert.deepEqual(fake.linesFromLatest().slice(0, 4), ['alice', 'bob', 'wrong one', 'correct horse']);
  // Never shown, never stored.
  assert.ok(!(await logLines(page)).some((l) => l.includes('horse') || l.includes('wrong one')));
  const stored = await page.evaluate(() => JSON.stringify(sessionStorage));
  assert.ok(!stored.includes('horse'), stored);

  // After a drop the page logs in again with the password it was given.
  fake.dropAll();
  await waitUntil(() => fake.joined().length === 1, 10_000, 'a new login');
  assert.deepEqual(fake.linesFromLatest().slice(0, 2), ['bob', 'correct horse']);
  assert.deepEqual(trouble, []);
  await context.close();
});

test('a private conversation: own lines come back from the server only', T, async () => {
  const fake = new FakeServer();
  const { context, page, trouble } = await openPage(fake);
  await logIn(page, 'bob');
  fake.sendAll('* alice accepted. You are in a private conversation with alice: your lines go to alice only; /endpm to return to the room.');
  await waitForLine(page, 'alice accepted.');
  assert.match(await page.locator('#line').getAttribute('placeholder'), /alice/);
  // A topic cannot end the conversation by looking like the notice.
  fake.sendAll('* carol set the topic of #lobby: Private conversation with alice ended. You are back in the room.');
  await waitForLine(page, 'carol set the topic');
  await say(page, 'just us');
  await waitUntil(() => fake.linesFromLatest().includes('just us'), 5_000, 'the private line');
  fake.sendAll('(-> alice) just us');
  await waitForLine(page, '→ alice (private): just us');
  assert.equal((await logLines(page)).filter((l) => l.includes('just us')).length, 1);
  fake.sendAll('* alice ended the private conversation. You are back in the room.');
  await waitForLine(page, 'alice ended the private');
  await say(page, 'everyone again');
  await waitForLine(page, 'bob: everyone again');
  // A refusal after joining (a /nick) leaves the chat as it is.
  fake.sendAll('! Nickname alice is taken. Choose another.');
  await waitForLine(page, '! Nickname alice is taken.');
  assert.ok(await page.locator('#chat-form').isVisible());
  assert.equal(await page.locator('#login-form').isVisible(), false);
  assert.deepEqual(trouble, []);
  await context.close();
});

test('scrollback is capped, and sticks to the bottom only at the bottom', T, async () => {
  const fake = new FakeServer();
  const { context, page, trouble } = await openPage(fake);
  await logIn(page, 'bob');
  for (let i = 1; i <= 1100; i++) fake.sendAll(`[alice] line ${i}`);
  await waitForLine(page, 'line 1100');
  assert.equal(await page.locator('#log li').count(), 1000);
  assert.match(await page.locator('#log li').first().textContent(), /alice: line 101$/);
  const gap = () => page.locator('#log').evaluate((l) => l.scrollHeight - l.scrollTop - l.clientHeight);
  assert.ok((await gap()) < 8, 'at the bottom after new lines');
  // The reader scrolls up: new lines (and old ones dropped) do not move
  // the view.
  const topLine = () => page.locator('#log').evaluate((l) => {
    const box = l.getBoundingClientRect();
    return document.elementFromPoint(box.left + 20, box.top + 20).closest('li').textContent;
  });
  await page.locator('#log').evaluate((l) => { l.scrollTop = 200; });
  const reading = await topLine();
  fake.sendAll('[alice] while reading');
  await waitForLine(page, 'while reading');
  assert.equal(await topLine(), reading);
  assert.match(await page.locator('#log li').first().textContent(), /alice: line 102$/);
  // Back at the bottom: it follows again.
  await page.locator('#log').evaluate((l) => { l.scrollTop = l.scrollHeight; });
  fake.sendAll('[alice] following');
  await waitForLine(page, 'following');
  assert.ok((await gap()) < 8);
  assert.deepEqual(trouble, []);
  await context.close();
});

test('reconnects with backoff, logs in again and returns to its room', T, async () => {
  const fake = new FakeServer();
  const { context, page, trouble } = await openPage(fake);
  await logIn(page, 'bob');
  await say(page, '/join #rust');
  await waitForLine(page, 'You are now in #rust.');

  // The server goes away; the next 4 connections are closed at once.
  fake.refuse = 4;
  const lost = Date.now();
  fake.dropAll();
  await page.locator('#status', { hasText: 'Reconnecting' }).waitFor({ timeout: 5_000 });
  assert.equal(await page.locator('#status').getAttribute('role'), 'status');
  await screenshot(page, 'page-reconnecting.png');
  await waitUntil(() => fake.joined().length === 1, 20_000, 'the login after 5 attempts');
  const times = [lost, ...fake.connections.slice(1).map((c) => c.at)];
  const waits = times.slice(1).map((t, i) => t - times[i]);
  // Attempt k waits between half and all of min(30 s, 0.5 s × 2^k), at least 0.5 s.
  const bounds = [[500, 500], [500, 1000], [1000, 2000], [2000, 4000], [4000, 8000]];
  waits.forEach((w, k) => {
    assert.ok(w >= bounds[k][0] - 30 && w <= bounds[k][1] + 1500, `wait ${k} was ${w} ms: ${waits}`);
  });
  // Same name, and back to #rust.
  await waitForLine(page, 'You are now in #rust.');
  assert.deepEqual(fake.linesFromLatest().slice(0, 2), ['bob', '/join #rust']);
  assert.equal(await page.locator('#room').textContent(), '#rust');
  assert.match(await page.locator('#status').textContent(), /Connected as bob/);

  // A reload in the same tab logs in again by itself (sessionStorage).
  await page.reload();
  await waitUntil(() => fake.joined().length === 1 && fake.linesFromLatest()[1] === '/join #rust', 10_000, 'the login after a reload');
  assert.equal(fake.linesFromLatest()[0], 'bob');

  // /quit: no reconnect, the name form is back.
  await page.locator('#chat-form').waitFor({ timeout: 5_000 });
  const count = fake.connections.length;
  await say(page, '/quit');
  await page.locator('#login-form').waitFor({ timeout: 5_000 });
  await page.waitForTimeout(1200);
  assert.equal(fake.connections.length, count);
  assert.equal(await page.locator('#nick').inputValue(), 'bob');
  assert.deepEqual(trouble, []);
  await context.close();
});

test('phone width and dark mode', T, async () => {
  const fake = new FakeServer();
  const { context, page, trouble } = await openPage(fake, {
    viewport: { width: 360, height: 640 }, colorScheme: 'dark', isMobile: true, hasTouch: true,
  });
  await logIn(page, 'bob');
  fake.sendAll('[alice] a long line that has to wrap on a narrow screen, because phones are narrow');
  fake.sendAll('~ carol waves');
  fake.sendAll('(alice) psst');
  fake.sendAll('! No such user: zed.');
  await waitForLine(page, 'No such user');
  // Nothing wider than the screen.
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= 360, `page is ${width}px wide`);
  for (const id of ['#line', '#log', '#users']) {
    const box = await page.locator(id).boundingBox();
    assert.ok(box && box.x >= 0 && box.x + box.width <= 360, `${id} ${JSON.stringify(box)}`);
  }
  const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.equal(bg, 'rgb(23, 24, 27)');
  await screenshot(page, 'page-phone-dark.png');
  assert.deepEqual(trouble, []);
  await context.close();
});
