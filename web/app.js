// loopchat's chat page: the line protocol of docs/protocol.md, spoken over
// a WebSocket (GET /ws, no subprotocol, one line per text frame).
//
// The page sends and receives exactly the lines an `nc` user types and
// reads; everything here is about showing them well. Every string that
// comes from the server is put in the page with textContent, never as HTML.
'use strict';

// ---- Settings

const MAX_LINES = 1000;          // scrollback: older lines are dropped
const BACKOFF_MIN_MS = 500;      // first reconnect wait
const BACKOFF_MAX_MS = 30000;    // longest reconnect wait
const REFRESH_MS = 30000;        // how often the user and room lists are asked for
const NICK_COLOURS = 8;          // classes .n0 to .n7 in style.css

// A nickname, as the server allows it (docs/protocol.md, "Joining").
const NICK = '[A-Za-z0-9_\\-\\[\\]{}|^]{1,32}';
// The notices that start and end a private conversation (/pm).
const PRIVATE_STARTED = new RegExp(`^(?:${NICK} accepted\\. )?You are in a private conversation with (${NICK}):`);
const PRIVATE_ENDED = new RegExp(`^(?:Private conversation with ${NICK} ended|${NICK} ended the private conversation|${NICK} left; your private conversation ended)\\. You are back in the room\\.$`);

// ---- The page's elements

const byId = (id) => document.getElementById(id);
const ui = {
  log: byId('log'),
  status: byId('status'),
  retry: byId('retry'),
  room: byId('room'),
  users: byId('users'),
  rooms: byId('rooms'),
  loginForm: byId('login-form'),
  loginHint: byId('login-hint'),
  nick: byId('nick'),
  password: byId('password'),
  passwordLabel: document.querySelector('label[for=password]'),
  chatForm: byId('chat-form'),
  line: byId('line'),
  joinForm: byId('join-form'),
  joinName: byId('join-name'),
};

// ---- State

const state = {
  ws: null,
  // 'offline', 'connecting', 'naming' (greeted, no name accepted yet),
  // 'password' (the server asked for one) or 'joined'.
  stage: 'offline',
  // Log in by ourselves on the greeting: true once the user has given a
  // name, false again when the server needs the user to answer.
  autoLogin: false,
  nick: sessionStorage.getItem('loopchat.nick') || '',
  // Kept in memory only, so a reconnect can log in again; a reload asks.
  password: '',
  // The room to return to after a reconnect.
  wantedRoom: sessionStorage.getItem('loopchat.room') || '',
  room: '',
  users: [],
  partner: '',        // the other side of a private conversation (/pm)
  attempts: 0,        // reconnects since the last successful login
  retryTimer: 0,
  refreshTimer: 0,
  // Answers still owed to questions the page asked by itself; the server
  // answers in order, so the next such answers are not shown.
  silent: { who: 0, rooms: 0 },
};

// ---- Connection

/** ws: or wss: to the same host and port the page came from. */
function socketUrl() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/ws`;
}

/**
 * How long to wait before reconnect number `attempt` (0, 1, 2, ...): doubles
 * each time from 0.5 s up to 30 s, with half of it random, so that the
 * clients of a restarted server do not all come back in the same instant.
 */
function backoffDelay(attempt, random = Math.random) {
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** attempt);
  return Math.max(BACKOFF_MIN_MS, ceiling / 2 + (random() * ceiling) / 2);
}

function connect() {
  clearTimeout(state.retryTimer);
  ui.retry.hidden = true;
  if (state.ws) return;
  state.silent = { who: 0, rooms: 0 };
  setStage('connecting');
  setStatus('connecting', 'Connecting…');
  const ws = new WebSocket(socketUrl());
  state.ws = ws;
  ws.onopen = () => setStatus('connecting', 'Connected; logging in…');
  // A frame holds one line; splitting anyway costs nothing.
  ws.onmessage = (event) => String(event.data).split('\n').forEach(receiveLine);
  ws.onclose = () => connectionClosed(ws);
}

function connectionClosed(ws) {
  if (ws !== state.ws) return; // an older socket, already replaced
  const wasJoined = state.stage === 'joined';
  state.ws = null;
  clearInterval(state.refreshTimer);
  setStage('offline');
  state.users = [];
  setPartner('');
  showUsers();
  if (wasJoined) addLocalLine('Connection lost.');
  if (state.autoLogin) {
    scheduleReconnect();
  } else {
    setStatus('offline', 'Not connected');
    showLogin();
  }
}

function scheduleReconnect() {
  const delay = backoffDelay(state.attempts++);
  setStatus('offline', `Disconnected. Reconnecting in ${Math.ceil(delay / 1000)} s…`);
  ui.retry.hidden = false;
  state.retryTimer = setTimeout(connect, delay);
}

/** Sends one line; false if there is no open connection to send it on. */
function send(line) {
  if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return false;
  state.ws.send(line);
  return true;
}

/** Asks the server for something whose answer the user did not ask to see. */
function askSilently(what) {
  if (send(`/${what}`)) state.silent[what] += 1;
}

function refreshLists() {
  askSilently('who');
  askSilently('rooms');
}

// ---- Lines from the server

/**
 * Reads one server line: updates the state it tells about (stage, room,
 * users), then shows it, unless it answers the page's own question.
 */
function receiveLine(line) {
  if (line === '') return;
  const shown = line.startsWith('* ') ? noticeReceived(line.slice(2))
    : line.startsWith('! ') ? errorReceived(line.slice(2))
    : true;
  if (shown) addLine(parseLine(line));
}

/** Returns whether the notice should be shown. */
function noticeReceived(text) {
  let m;
  if (text === 'Welcome to loopchat! What shall I call you?') {
    greeted();
  } else if ((m = text.match(/^Password for (\S+)\? /))) {
    passwordAsked();
  } else if ((m = text.match(/^The room contains: (.*)$/))) {
    state.users = splitList(m[1]);
  } else if ((m = text.match(new RegExp(`^Welcome, (${NICK})! \\d+ users? online in (#\\S+)\\.`)))) {
    joined(m[1], m[2]);
  } else if ((m = text.match(/^You are now in (#\S+)\.$/))) {
    enteredRoom(m[1]);
  } else if ((m = text.match(new RegExp(`^(${NICK}) has entered the room$`)))) {
    addUser(m[1]);
  } else if ((m = text.match(new RegExp(`^(${NICK}) has left the room \\(`)))) {
    removeUser(m[1]);
  } else if ((m = text.match(new RegExp(`^(${NICK}) is now known as (${NICK})$`)))) {
    renamed(m[1], m[2]);
  } else if ((m = text.match(/^\d+ users? online: (.*)$/))) {
    state.users = splitList(m[1]);
    showUsers();
    return !takeSilent('who');
  } else if ((m = text.match(/^Rooms: (.*)$/))) {
    showRooms(m[1]);
    return !takeSilent('rooms');
  } else if (text.startsWith('PING ')) {
    send('/pong'); // any line answers; the user need not see it
    return false;
  } else if ((m = text.match(PRIVATE_STARTED))) {
    setPartner(m[1]);
  } else if (PRIVATE_ENDED.test(text)) {
    setPartner('');
  }
  if (state.stage !== 'joined') ui.loginHint.textContent = `* ${text}`;
  return true;
}

/** Returns whether the error should be shown (always). */
function errorReceived(text) {
  if (state.stage === 'joined') {
    // e.g. a refused /nick: nothing to do but show it
  } else if (/^(Wrong password|Password too short|Could not register)/.test(text)) {
    state.password = ''; // wrong, or refused: ask the user
    if (/Too many failures/.test(text)) state.autoLogin = false;
    else passwordAsked();
  } else if (/Choose another( name)?\.$/.test(text) || /^Too many new accounts/.test(text)) {
    // The name was refused: only the user can choose another.
    state.autoLogin = false;
    setStage('naming');
    showLogin();
  }
  if (state.stage !== 'joined') ui.loginHint.textContent = `! ${text}`;
  return true;
}

function greeted() {
  setStage('naming');
  if (state.autoLogin && state.nick) {
    send(state.nick);
  } else {
    showLogin();
  }
}

function passwordAsked() {
  setStage('password');
  if (state.autoLogin && state.password) {
    send(state.password);
  } else {
    showLogin();
  }
}

function joined(nick, room) {
  setStage('joined');
  state.attempts = 0;
  state.nick = nick; // as the server spells it
  sessionStorage.setItem('loopchat.nick', nick);
  setStatus('online', `Connected as ${nick}`);
  // Back to the room we were in before the connection was lost.
  const wanted = state.wantedRoom;
  const elsewhere = wanted && !sameName(wanted, room);
  if (elsewhere) send(`/join ${wanted}`);
  enteredRoom(room, !elsewhere);
  showChat();
  clearInterval(state.refreshTimer);
  state.refreshTimer = setInterval(refreshLists, REFRESH_MS);
}

/**
 * After the welcome or a /join (the member list came just before). The room
 * is remembered as the one to return to, unless we are on our way back to
 * another one after a reconnect.
 */
function enteredRoom(room, remember = true) {
  state.room = room;
  ui.room.textContent = room;
  document.title = `${room} – loopchat`;
  if (remember) {
    state.wantedRoom = room;
    sessionStorage.setItem('loopchat.room', room);
  }
  addUser(state.nick);
  askSilently('rooms'); // counts have changed
  markCurrentRoom();
}

function addUser(nick) {
  if (!state.users.some((u) => sameName(u, nick))) state.users.push(nick);
  showUsers();
}

function removeUser(nick) {
  state.users = state.users.filter((u) => !sameName(u, nick));
  showUsers();
}

function renamed(oldNick, newNick) {
  state.users = state.users.map((u) => (sameName(u, oldNick) ? newNick : u));
  if (sameName(oldNick, state.nick)) {
    state.nick = newNick;
    sessionStorage.setItem('loopchat.nick', newNick);
    setStatus('online', `Connected as ${newNick}`);
  }
  showUsers();
}

function setPartner(nick) {
  state.partner = nick;
  ui.line.placeholder = nick ? `Private message to ${nick} (/endpm to stop)` : 'Message, or /help';
}

function takeSilent(what) {
  if (state.silent[what] === 0) return false;
  state.silent[what] -= 1;
  return true;
}

// Nicknames and room names are compared ignoring ASCII case.
const sameName = (a, b) => a.toLowerCase() === b.toLowerCase();
const splitList = (text) => text.split(', ').filter(Boolean);

// ---- Lines typed by the user

/** The login form sends the name, or the password when one was asked. */
function submitLogin(event) {
  event.preventDefault();
  if (state.stage === 'password') {
    state.password = ui.password.value;
    ui.password.value = '';
    state.autoLogin = true;
    send(state.password);
    return;
  }
  state.nick = ui.nick.value.trim();
  if (!state.nick) return;
  state.autoLogin = true;
  state.attempts = 0;
  if (state.stage === 'naming') send(state.nick);
  else if (!state.ws) connect();
}

function submitChat(event) {
  event.preventDefault();
  const line = ui.line.value;
  if (line.trim() === '') return;
  if (line.trim() === '/clear') {
    ui.log.replaceChildren(); // a page command: the server never sees it
  } else if (!send(line)) {
    addLocalLine('Not connected: that line was not sent.');
    return; // keep it in the box, to send again
  } else {
    echoOwnLine(line);
  }
  ui.line.value = '';
}

/**
 * The server does not echo your own room lines back (docs/protocol.md), so
 * show them here as the others will see them. Private lines and lines in a
 * private conversation are confirmed by the server as `(-> NICK) ...`.
 */
function echoOwnLine(line) {
  const command = line.match(/^\/(\S+)\s*(.*)$/);
  if (!command) {
    if (!state.partner) addLine({ kind: 'chat own', nick: state.nick, text: line });
  } else if (command[1].startsWith('/')) {
    if (!state.partner) addLine({ kind: 'chat own', nick: state.nick, text: line.slice(1) });
  } else if (command[1].toLowerCase() === 'me') {
    addLine({ kind: 'action own', nick: state.nick, text: command[2] });
  } else if (/^(quit|exit|logout)$/i.test(command[1])) {
    state.autoLogin = false; // leaving on purpose: no reconnect
  }
}

function joinRoom(name) {
  const room = name.trim();
  if (room) send(`/join ${room.startsWith('#') ? room : `#${room}`}`);
}

// ---- Showing lines

/**
 * Splits a server line into its parts, following the markers of
 * docs/protocol.md ("What the server sends"): with --timestamps, chat,
 * private and action lines start with HH:MM:SS.
 */
function parseLine(line) {
  const stamp = line.match(/^(\d\d:\d\d:\d\d) (.*)$/s);
  const time = stamp ? stamp[1] : '';
  return { ...lineParts(stamp ? stamp[2] : line), time };
}

function lineParts(line) {
  let m;
  if (line.startsWith('* ')) return { kind: 'notice', text: line.slice(2) };
  if (line.startsWith('! ')) return { kind: 'error', text: line.slice(2) };
  if ((m = line.match(/^\[([^\]]*)\] (.*)$/s))) return { kind: 'chat', nick: m[1], text: m[2] };
  if ((m = line.match(/^~ (\S+) (.*)$/s))) return { kind: 'action', nick: m[1], text: m[2] };
  if ((m = line.match(/^\(-> ([^)]*)\) (.*)$/s))) return { kind: 'private own', to: m[1], text: m[2] };
  if ((m = line.match(/^\(([^)]*)\) (.*)$/s))) {
    // A private action reads `(NICK) * NICK TEXT`.
    const action = `* ${m[1]} `;
    return m[2].startsWith(action)
      ? { kind: 'private action', nick: m[1], text: m[2].slice(action.length) }
      : { kind: 'private', nick: m[1], text: m[2] };
  }
  return { kind: 'notice', text: line };
}

/** A line the page itself says (not from the server). */
function addLocalLine(text) {
  addLine({ kind: 'local', text });
}

/** Appends a line to the log; keeps the reader at the bottom if they were. */
function addLine(parts) {
  const atBottom = ui.log.scrollHeight - ui.log.scrollTop - ui.log.clientHeight < 8;
  const item = document.createElement('li');
  item.className = parts.kind;
  item.append(timeElement(parts.time), ' ');
  if (parts.kind.includes('action')) {
    item.append('* ', nickElement(parts.nick), ' ');
  } else if (parts.nick) {
    item.append(nickElement(parts.nick), parts.kind === 'private' ? ' (private): ' : ': ');
  } else if (parts.to) {
    item.append('→ ', nickElement(parts.to), ' (private): ');
  } else if (parts.kind !== 'local') {
    item.append(parts.kind === 'error' ? '! ' : '* '); // as the server sent them
  }
  item.append(element('span', 'text', parts.text));
  ui.log.append(item);
  let removed = 0;
  while (ui.log.childElementCount > MAX_LINES) {
    removed += ui.log.firstElementChild.offsetHeight;
    ui.log.firstElementChild.remove();
  }
  if (atBottom) ui.log.scrollTop = ui.log.scrollHeight;
  else ui.log.scrollTop -= removed; // the lines being read stay in view
}

/** A new element with a class and a text: the only way text gets in. */
function element(tag, className, text) {
  const el = document.createElement(tag);
  el.className = className;
  el.textContent = text;
  return el;
}

/** HH:MM, and HH:MM:SS on hover: the server's time when it sent one
 * (--timestamps), else the time the line came. */
function timeElement(stamp) {
  const full = stamp || new Date().toTimeString().slice(0, 8);
  const el = element('time', 'time', full.slice(0, 5));
  el.dateTime = full;
  el.title = full;
  return el;
}

const nickElement = (nick) => element('span', `nick n${nickColour(nick)}`, nick);

/** One of NICK_COLOURS, the same for a nickname on every screen. */
function nickColour(nick) {
  let hash = 0;
  for (const ch of nick.toLowerCase()) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return hash % NICK_COLOURS;
}

// ---- Showing state

function setStage(stage) {
  state.stage = stage;
  document.body.dataset.stage = stage;
}

function setStatus(connection, text) {
  ui.status.dataset.state = connection;
  ui.status.textContent = text;
}

/** The name form, or the password form when the server asked for one. */
function showLogin() {
  const asking = state.stage === 'password';
  ui.loginForm.hidden = false;
  ui.chatForm.hidden = true;
  ui.nick.readOnly = asking;
  ui.password.hidden = !asking;
  ui.passwordLabel.hidden = !asking;
  ui.password.required = asking;
  if (!ui.nick.value) ui.nick.value = state.nick;
  (asking ? ui.password : ui.nick).focus();
}

function showChat() {
  ui.loginForm.hidden = true;
  ui.chatForm.hidden = false;
  ui.loginHint.textContent = '';
  ui.line.focus();
}

/** A list item holding a button that calls `onClick`. */
function listButton(className, text, onClick) {
  const button = element('button', className, text);
  button.type = 'button';
  button.addEventListener('click', onClick);
  const item = document.createElement('li');
  item.append(button);
  return item;
}

function showUsers() {
  const items = state.users.map((nick) => {
    const item = listButton(`nick n${nickColour(nick)}`, nick, () => startPrivateLine(nick));
    item.firstChild.title = `Send ${nick} a private line`;
    if (sameName(nick, state.nick)) item.firstChild.append(' (you)');
    return item;
  });
  ui.users.replaceChildren(...items);
  // Our own room's count is known here; the others' come with /rooms.
  const count = roomButton(state.room)?.querySelector('.count');
  if (count && state.users.length) count.textContent = String(state.users.length);
}

/** `* Rooms: #lobby (3), #rust (1)` → one button per room. */
function showRooms(list) {
  const items = [...list.matchAll(/(#[^\s(),]+) \((\d+)\)/g)].map(([, room, count]) => {
    const item = listButton('room', `${room} `, () => joinRoom(room));
    item.firstChild.dataset.room = room;
    item.firstChild.append(element('span', 'count', count));
    return item;
  });
  ui.rooms.replaceChildren(...items);
  markCurrentRoom();
}

function roomButton(room) {
  return [...ui.rooms.querySelectorAll('button')].find((b) => sameName(b.dataset.room, room));
}

function markCurrentRoom() {
  for (const button of ui.rooms.querySelectorAll('button')) button.removeAttribute('aria-current');
  roomButton(state.room)?.setAttribute('aria-current', 'true');
}

function startPrivateLine(nick) {
  if (sameName(nick, state.nick)) return;
  ui.line.value = `/msg ${nick} `;
  ui.line.focus();
}

// ---- Start

ui.loginForm.addEventListener('submit', submitLogin);
ui.chatForm.addEventListener('submit', submitChat);
ui.joinForm.addEventListener('submit', (event) => {
  event.preventDefault();
  joinRoom(ui.joinName.value);
  ui.joinName.value = '';
  ui.line.focus();
});
ui.retry.addEventListener('click', connect);
// Back on the network: no need to wait out the backoff.
window.addEventListener('online', () => { if (!state.ws && state.autoLogin) connect(); });

ui.nick.value = state.nick;
if (state.nick) {
  // A reload in the same tab: log in again as before.
  state.autoLogin = true;
  connect();
} else {
  setStage('offline');
  showLogin();
}
