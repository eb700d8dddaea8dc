// Bots: connected or not, logged in as whom, the QR code while a scan is needed ("scan
// again" after a session expired), what the channel cannot do, and the puppet's own state
// from the client heartbeat ("cannot reach WeChat: ..., retrying in 8 s").
import {
  $, api, currentBot, el, handleFailure, notifyPanels, registerPanel, state,
} from './core.js';

// Capabilities worth saying a channel lacks, and how to say it.
const MISSING = [
  ['rooms', 'rooms'],
  ['friendships', 'friend requests'],
  ['contact_list', 'a contact list'],
];

let shown = ''; // "<bot>/<channel>" of the bot the other panels show
let drawn = ''; // what the list shows now: redrawn only when it changes (no QR flicker)

export async function loadBots() {
  try {
    const { bots } = await api('/api/bots');
    state.bots = bots;
    render();
    notifyPanels('onBots', bots);
    const bot = currentBot();
    const now = bot ? `${bot.bot}/${bot.channel}` : '';
    if (now !== shown) {
      shown = now;
      notifyPanels('onBotChanged', bot);
    }
  } catch (error) {
    handleFailure(error, 'Bots');
  }
}

function puppetLine(puppet) {
  if (!puppet || puppet.state === 'running' || !puppet.message) return null;
  let text = puppet.message;
  if (puppet.retry_in_s && !/retrying/.test(text)) text += `; retrying in ${puppet.retry_in_s} s`;
  return el('p', { class: 'puppet-state', role: 'status', text: `Puppet ${puppet.state}: ${text}` });
}

function channelLine(bot) {
  const caps = bot.capabilities;
  if (!caps || bot.channel === 'mock') return null;
  const missing = MISSING.filter(([flag]) => caps[flag] === false).map(([, what]) => what);
  const parts = [];
  if (missing.length > 0) parts.push(`no ${missing.join(', no ')}`);
  const budget = caps.send_budget;
  if (budget) {
    const hours = budget.window_s / 3600;
    parts.push(`${budget.user_first ? 'the user writes first; ' : ''}${budget.per_user_message} `
      + `messages per user message, within ${hours >= 1 ? `${hours} h` : `${budget.window_s} s`}`);
  }
  if (parts.length === 0) return null;
  const direct = caps.rooms === false ? 'direct messages only: ' : '';
  return el('div', { class: 'hint channel-note', text: `${direct}${parts.join('; ')}` });
}

function scanBlock(bot) {
  if (!bot.scan) return [];
  const again = bot.logout && bot.logout.reason;
  const nodes = [];
  if (again) {
    nodes.push(el('p', { class: 'scan-again', role: 'alert' },
      el('strong', { text: 'Scan again: ' }), `logged out (${bot.logout.reason}).`));
  }
  if (bot.scan.qr_image) {
    const status = bot.scan.status_name || 'waiting';
    nodes.push(
      el('p', { text: `${again ? 'Scan the new QR code' : 'Scan with WeChat to log in'} (${status}):` }),
      el('img', { class: 'qr', src: bot.scan.qr_image, alt: `QR code to log bot ${bot.bot} in` }),
    );
  } else {
    nodes.push(el('div', { class: 'hint', text: `Scan status: ${bot.scan.status_name || bot.scan.status}` }));
  }
  return nodes;
}

function render() {
  const list = $('bots');
  // heartbeat times change every few seconds but are not shown
  const now = JSON.stringify(state.bots.map(({ last_heartbeat: h, last_event_at: e, ...shownFields }) => shownFields));
  if (now === drawn && list.childElementCount > 0) {
    renderPicker();
    return;
  }
  drawn = now;
  list.replaceChildren();
  if (state.bots.length === 0) {
    list.append(el('li', { class: 'hint', text: 'No bot has connected yet. Start the Node client.' }));
  }
  for (const bot of state.bots) {
    const login = bot.logged_in
      ? el('span', { class: 'badge ok', text: 'logged in' })
      : bot.scan
        ? el('span', { class: 'badge warn', text: bot.logout && bot.logout.reason ? 'scan again' : 'scan needed' })
        : el('span', { class: 'badge warn', text: 'not logged in' });
    const link = bot.connected
      ? el('span', { class: `badge ${bot.status === 'stalled' ? 'warn' : 'ok'}`, text: bot.status || 'online' })
      : el('span', { class: 'badge bad', text: 'offline' });
    const kind = bot.channel && bot.channel !== 'unknown'
      ? el('span', { class: 'badge channel', text: bot.channel }) : null;
    const item = el('li', { 'data-bot': bot.bot, 'data-channel': bot.channel || '' },
      el('strong', { text: bot.bot }), link, login, kind);
    if (bot.user && bot.user.name) item.append(el('div', { class: 'hint', text: `as ${bot.user.name}` }));
    if (!bot.logged_in && bot.logout && bot.logout.reason && !bot.scan) {
      item.append(el('p', { class: 'scan-again', text: `Logged out: ${bot.logout.reason}` }));
    }
    item.append(...scanBlock(bot));
    const puppet = puppetLine(bot.puppet);
    if (puppet) item.append(puppet);
    const note = channelLine(bot);
    if (note) item.append(note);
    list.append(item);
  }
  renderPicker();
}

function renderPicker() {
  const picker = $('bot-picker');
  const select = $('bot-select');
  const names = state.bots.filter((b) => b.connected).map((b) => b.bot);
  picker.hidden = names.length < 2;
  if (names.length >= 2) {
    if (!names.includes(state.bot)) state.bot = names[0];
    if ([...select.options].map((o) => o.value).join() !== names.join()) {
      select.replaceChildren(...names.map((n) => el('option', { value: n, text: n })));
    }
    select.value = state.bot;
  } else {
    state.bot = null;
  }
}

registerPanel({
  name: 'bots',
  init() {
    $('bot-select').addEventListener('change', (event) => {
      state.bot = event.target.value;
      loadBots();
    });
  },
  load: loadBots,
  refreshMs: 5000,
  onClients: loadBots,
  onEvent(event) {
    if (['login', 'logout', 'scan'].includes(event.name)) loadBots();
  },
  onSignOut() {
    shown = '';
    drawn = '';
    $('bot-picker').hidden = true;
  },
});
