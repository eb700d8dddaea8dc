// MetaPuppet dashboard: signs in, loads the panels, and reads the live feed from
// /api/events/stream (server-sent events read with fetch, so the token travels in a header,
// never in the URL). The panels are modules (panel-*.js, see core.js for their hooks); a new
// panel is one more module imported here and one more <section> in index.html.
import {
  $, ApiError, api, can, notifyPanels, onSignOutRequest, panels, setConnection, state,
} from './core.js';
import { loadBots } from './panel-bots.js';
import './panel-directory.js';
import './panel-send.js';
import { loadRecent } from './panel-feed.js';
import './panel-clients.js';
import './panel-mock.js';

const TOKEN_KEY = 'metapuppet.token';
const live = { stream: null, timers: [], retryMs: 1000 };

// ------------------------------------------------------------------ sign in and out

async function signIn(token) {
  state.token = token;
  // /api/session answers 200 for any token, so a wrong one is no failed request
  const session = await api('/api/session');
  if (!session.authenticated) throw new ApiError(401, { message: 'invalid token' });
  state.permissions = session.permissions || [];
  sessionStorage.setItem(TOKEN_KEY, token);
  $('login').hidden = true;
  $('dashboard').hidden = false;
  $('sign-out').hidden = false;
  $('send-form').hidden = !can('send');
  $('send-denied').hidden = can('send');
  setConnection('Connecting…');
  if (!can('read')) {
    setConnection('Signed in (this token may not read events)');
    return;
  }
  // the bots first: what the other panels show depends on the bot's channel
  await loadBots();
  await Promise.all(panels.filter((p) => p.name !== 'bots' && p.load)
    .map((p) => Promise.resolve().then(() => p.load()).catch(() => undefined)));
  openStream();
  for (const panel of panels) {
    if (panel.refreshMs && panel.load) live.timers.push(setInterval(() => panel.load(), panel.refreshMs));
  }
}

function signOut(message) {
  if (live.stream) live.stream.abort();
  live.stream = null;
  live.timers.forEach(clearInterval);
  live.timers = [];
  state.token = null;
  state.bots = [];
  state.bot = null;
  sessionStorage.removeItem(TOKEN_KEY);
  notifyPanels('onSignOut');
  $('dashboard').hidden = true;
  $('sign-out').hidden = true;
  $('login').hidden = false;
  const error = $('login-error');
  error.textContent = message || '';
  error.hidden = !message;
  setConnection('Signed out');
  $('token').value = '';
  $('token').focus();
}

onSignOutRequest(signOut);

// ------------------------------------------------------------------ the live stream

function openStream() {
  const controller = new AbortController();
  live.stream = controller;
  readStream(controller).catch(() => undefined);
}

async function readStream(controller) {
  let response;
  try {
    response = await fetch('/api/events/stream', {
      headers: { Authorization: `Bearer ${state.token}`, Accept: 'text/event-stream' },
      signal: controller.signal,
      cache: 'no-store',
    });
  } catch {
    return retryStream(controller);
  }
  if (response.status === 401) {
    signOut('The token is no longer accepted. Sign in again.');
    return undefined;
  }
  if (!response.ok || !response.body) return retryStream(controller);
  setConnection('Live', 'live');
  live.retryMs = 1000;
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let cut;
      while ((cut = buffer.indexOf('\n\n')) >= 0) {
        handleFrame(buffer.slice(0, cut));
        buffer = buffer.slice(cut + 2);
      }
    }
  } catch {
    // the connection dropped or was aborted; retried below unless aborted
  }
  return retryStream(controller);
}

function retryStream(controller) {
  if (controller.signal.aborted || live.stream !== controller) return undefined;
  setConnection('Reconnecting…', 'down');
  const wait = live.retryMs;
  live.retryMs = Math.min(live.retryMs * 2, 15000);
  setTimeout(() => {
    if (live.stream === controller && !controller.signal.aborted) {
      loadRecent();
      readStream(controller).catch(() => undefined);
    }
  }, wait);
  return undefined;
}

function handleFrame(frame) {
  let kind = 'message';
  const data = [];
  for (const line of frame.split('\n')) {
    if (line.startsWith('event:')) kind = line.slice(6).trim();
    else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
  }
  if (data.length === 0) return;
  let parsed;
  try {
    parsed = JSON.parse(data.join('\n'));
  } catch {
    return;
  }
  if (kind === 'events') parsed.forEach((event) => notifyPanels('onEvent', event));
  else if (kind === 'clients') notifyPanels('onClients');
  else if (kind === 'lagged') loadRecent();
}

// ------------------------------------------------------------------ wiring

function start() {
  notifyPanels('init');
  $('login-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const token = $('token').value.trim();
    const button = event.submitter || $('login-form').querySelector('button');
    button.disabled = true;
    try {
      await signIn(token);
    } catch (error) {
      const message = error instanceof ApiError && error.status === 401
        ? 'That token is not valid for this server.'
        : `Cannot sign in: ${error.message}`;
      signOut(message);
    } finally {
      button.disabled = false;
    }
  });
  $('sign-out').addEventListener('click', () => signOut());
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) {
    signIn(saved).catch((error) => signOut(
      error instanceof ApiError && error.status === 401 ? 'The saved token is no longer valid.' : '',
    ));
  } else {
    $('token').focus();
  }
}

start();
