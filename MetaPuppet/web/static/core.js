// MetaPuppet dashboard, shared core: state, the REST client, DOM helpers and the panel
// registry. Plain JavaScript modules, no framework, nothing loaded from the internet.
// Text from the bot is only ever set with textContent.
//
// A panel is a module that calls registerPanel({...}) and has a <section> in index.html:
//   name                 a short id (for logs and tests)
//   init()               once, when the page starts: wire the panel's own DOM listeners
//   load()               after sign-in, and every refreshMs when that is set
//   refreshMs            optional: reload period in ms
//   onEvent(event)       every live bot event {id, bot, name, payload, ts}, in order
//   onClients()          a client connected or went away
//   onBots(bots)         the bots list was loaded (login, QR code, channel capabilities)
//   onBotChanged(bot)    the bot the dashboard shows changed, or its channel did
//   onSignOut()          the user signed out: forget what the panel holds
// Every hook is optional. app.js signs in, opens the live stream and calls the hooks.

export const state = {
  token: null,
  permissions: [],
  bots: [],
  bot: null, // the bot chosen in the picker when several are connected
  names: new Map(), // id -> display name, for feed lines
};

export const $ = (id) => document.getElementById(id);

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.error;
  }
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${state.token}` };
  if (options.body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, {
    method: options.method || 'GET',
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
    cache: 'no-store',
  });
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

export function botQuery(extra = {}) {
  const params = new URLSearchParams(extra);
  if (state.bot) params.set('bot', state.bot);
  const text = params.toString();
  return text ? `?${text}` : '';
}

export const can = (permission) => state.permissions.includes(permission);

// The bot the dashboard shows: the one picked, else the only (or first) connected one.
export function currentBot() {
  if (state.bot) return state.bots.find((b) => b.bot === state.bot) || null;
  return state.bots.find((b) => b.connected) || state.bots[0] || null;
}

// What the current bot's channel can do (rooms, friendships, contact_list, ...). Before a
// bot is known everything is allowed, as for Wechaty's own puppets.
export function channelCan(flag) {
  const bot = currentBot();
  const capabilities = bot && bot.capabilities;
  return !capabilities || capabilities[flag] !== false;
}

export function channel() {
  const bot = currentBot();
  return (bot && bot.channel) || 'unknown';
}

export function sendBudgetRules() {
  const bot = currentBot();
  return (bot && bot.capabilities && bot.capabilities.send_budget) || null;
}

export function setConnection(text, kind) {
  const node = $('connection');
  node.textContent = text;
  node.className = `connection ${kind || ''}`;
}

export function ago(seconds) {
  if (seconds === null || seconds === undefined) return '—';
  const s = Math.max(0, Math.round(Date.now() / 1000 - seconds));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  return `${Math.floor(s / 3600)} h ago`;
}

export const clock = (ms) => new Date(ms).toLocaleTimeString();

// "14:32:05", or the date too when it is not today.
export function when(seconds) {
  const date = new Date(seconds * 1000);
  return date.toDateString() === new Date().toDateString() ? date.toLocaleTimeString() : date.toLocaleString();
}

// One line for a send budget (GET /api/bots/{bot}/budget/{contact}).
export function describeBudget(budget) {
  if (!budget) return '';
  if (!budget.open) return `send window closed: ${budget.reason || 'the user has not written yet'}`;
  const rules = budget.rules || {};
  const left = budget.remaining === null || budget.remaining === undefined ? '' : `${budget.remaining}`
    + (rules.per_user_message ? ` of ${rules.per_user_message}` : '') + ' messages left';
  const until = budget.closes_at ? `until ${when(budget.closes_at)}` : '';
  return ['send window open', left, until].filter(Boolean).join(' · ');
}

// ------------------------------------------------------------------ panels

export const panels = [];

export function registerPanel(panel) {
  panels.push(panel);
  return panel;
}

// Call `hook` on every panel that has it; one failing panel does not stop the others.
export function notifyPanels(hook, ...args) {
  for (const panel of panels) {
    if (typeof panel[hook] !== 'function') continue;
    try {
      const result = panel[hook](...args);
      if (result && typeof result.catch === 'function') result.catch((error) => reportPanelError(panel, hook, error));
    } catch (error) {
      reportPanelError(panel, hook, error);
    }
  }
}

function reportPanelError(panel, hook, error) {
  if (error instanceof ApiError) handleFailure(error, panel.name);
  else setConnection(`${panel.name}: ${error && error.message ? error.message : error}`, 'down');
}

let signOutHandler = () => undefined;
export function onSignOutRequest(handler) {
  signOutHandler = handler;
}

export function handleFailure(error, where) {
  if (error instanceof ApiError && error.status === 401) {
    signOutHandler('The token is no longer accepted. Sign in again.');
    return;
  }
  const text = error instanceof ApiError ? error.message : 'the server cannot be reached';
  setConnection(`${where}: ${text}`, 'down');
}

// Fill the send form's recipient and focus the text (panels share the one send form).
export function chooseTarget(value) {
  $('send-to').value = value;
  $('send-to').dispatchEvent(new Event('change'));
  $('send-text').focus();
}
