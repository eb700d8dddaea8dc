// Contacts and rooms, searchable. What is shown follows the bot's channel: without a
// contact list (iLink) the contacts are the people who wrote to the bot; without rooms the
// rooms list is replaced by a note; with a send budget every contact shows its window.
import {
  $, ApiError, api, botQuery, can, channel, channelCan, chooseTarget, currentBot,
  describeBudget, el, handleFailure, registerPanel, sendBudgetRules, state,
} from './core.js';

export const directory = {
  contacts: [],
  rooms: [],
  budgets: new Map(), // contact id -> budget (channels with a send budget)
  listeners: [], // called after every load (the send form refreshes its recipients)
};

let loading = null;
let again = false;

// Loads the directory; a call while one is running makes it run once more afterwards.
export function loadDirectory() {
  if (loading) {
    again = true;
    return loading;
  }
  loading = (async () => {
    try {
      do {
        again = false;
        await loadOnce();
      } while (again);
    } finally {
      loading = null;
    }
  })();
  return loading;
}

async function budgetList(bot) {
  if (!bot) return [];
  const { budgets } = await api(`/api/bots/${encodeURIComponent(bot.bot)}/budgets`);
  return budgets;
}

async function loadOnce() {
  const bot = currentBot();
  try {
    const wantBudgets = Boolean(sendBudgetRules()) || !channelCan('contact_list');
    const [contacts, rooms, budgets] = await Promise.all([
      channelCan('contact_list') ? api(`/api/contacts${botQuery()}`).then((r) => r.contacts) : null,
      channelCan('rooms') ? api(`/api/rooms${botQuery()}`).then((r) => r.rooms) : [],
      wantBudgets ? budgetList(bot) : [],
    ]);
    directory.budgets = new Map(budgets.filter((b) => b.budget).map((b) => [b.contact, b.budget]));
    if (contacts === null) {
      // no contact list on this channel: the people who wrote to the bot
      directory.contacts = budgets.map((b) => ({ id: b.contact, name: b.name, alias: null }));
    } else {
      directory.contacts = contacts.filter((c) => !c.self);
      for (const c of contacts) state.names.set(c.id, c.alias || c.name || c.id);
    }
    for (const c of directory.contacts) if (!state.names.has(c.id)) state.names.set(c.id, c.name || c.id);
    directory.rooms = rooms;
    for (const r of rooms) state.names.set(r.id, r.topic || r.id);
  } catch (error) {
    directory.contacts = [];
    directory.rooms = [];
    directory.budgets = new Map();
    if (!(error instanceof ApiError && error.code === 'bot_not_connected')) handleFailure(error, 'Contacts');
  }
  render();
  for (const listener of directory.listeners) listener();
}

function matches(query, ...fields) {
  if (!query) return true;
  const needle = query.toLocaleLowerCase();
  return fields.some((f) => f && String(f).toLocaleLowerCase().includes(needle));
}

function render() {
  const query = $('search').value.trim();
  const contacts = directory.contacts.filter((c) => matches(query, c.name, c.alias, c.id));
  const rooms = directory.rooms.filter((r) => matches(query, r.topic, r.id));
  $('contacts-count').textContent = `(${contacts.length})`;
  $('rooms-count').textContent = `(${rooms.length})`;
  const noList = !channelCan('contact_list');
  $('contacts-note').hidden = !noList;
  $('contacts-note').textContent = noList
    ? `The ${channel()} channel has no contact list: these are the people who wrote to the bot.` : '';
  $('contacts').replaceChildren(
    ...contacts.map((c) => {
      const label = c.alias ? `${c.alias} (${c.name})` : c.name || c.id;
      const budget = directory.budgets.get(c.id);
      const item = el('li', { 'data-contact': c.id },
        el('span', { class: 'name' }, label, el('span', { class: 'id', text: c.id }),
          budget ? el('span', { class: `budget ${budget.open ? 'open' : 'closed'}`, text: describeBudget(budget) }) : null),
        can('send') ? el('button', {
          type: 'button', text: 'Message', 'aria-label': `Message ${label}`,
          onclick: () => chooseTarget(`contact:${c.id}`),
        }) : null);
      return item;
    }),
  );
  const hasRooms = channelCan('rooms');
  $('rooms-section').hidden = !hasRooms;
  $('rooms-note').hidden = hasRooms;
  $('rooms-note').textContent = hasRooms ? '' : `The ${channel()} channel has no rooms: direct messages only.`;
  $('rooms').replaceChildren(
    ...rooms.map((r) => {
      const item = el('li', {},
        el('span', { class: 'name' }, r.topic || r.id,
          el('span', { class: 'id', text: `${r.id}${r.member_count ? ` · ${r.member_count} members` : ''}` })));
      const members = el('ul', { class: 'members', hidden: true });
      item.append(
        el('button', {
          type: 'button', text: 'Members', 'aria-expanded': 'false', 'aria-label': `Members of ${r.topic || r.id}`,
          onclick: (event) => toggleMembers(event.currentTarget, r.id, members),
        }),
      );
      if (can('send')) {
        item.append(el('button', {
          type: 'button', text: 'Message', 'aria-label': `Message room ${r.topic || r.id}`,
          onclick: () => chooseTarget(`room:${r.id}`),
        }));
      }
      item.append(members);
      return item;
    }),
  );
}

async function toggleMembers(button, roomId, list) {
  if (!list.hidden) {
    list.hidden = true;
    button.setAttribute('aria-expanded', 'false');
    return;
  }
  try {
    const { members } = await api(`/api/rooms/${encodeURIComponent(roomId)}/members${botQuery()}`);
    list.replaceChildren(...members.map((m) => el('li', { text: m.alias || m.name || m.id })));
    list.hidden = false;
    button.setAttribute('aria-expanded', 'true');
  } catch (error) {
    handleFailure(error, 'Members');
  }
}

const asked = new Set(); // ids the directory was loaded again for (once each)
function unknown(entries, id) {
  if (!id || asked.has(id) || entries.some((e) => e.id === id)) return false;
  if (asked.size > 5000) asked.clear();
  asked.add(id);
  return true;
}

let timer = null;
export function scheduleDirectory(ms = 500) {
  clearTimeout(timer);
  timer = setTimeout(loadDirectory, ms);
}

registerPanel({
  name: 'directory',
  init() {
    $('search').addEventListener('input', render);
    $('directory-refresh').addEventListener('click', loadDirectory);
  },
  load: loadDirectory,
  onBotChanged: loadDirectory,
  onEvent(event) {
    if (['room-join', 'room-leave', 'room-topic', 'friendship', 'login'].includes(event.name)) scheduleDirectory();
    else if (event.name === 'message') {
      const p = event.payload || {};
      // a user's message opens a send window, the bot's own uses it up
      if (sendBudgetRules() || !channelCan('contact_list')) scheduleDirectory(300);
      // someone (or a room) the list does not have yet: load it again, once per id
      else if (!p.self && (unknown(directory.contacts, p.talkerId) || unknown(directory.rooms, p.roomId))) {
        scheduleDirectory();
      }
    }
  },
  onSignOut() {
    directory.contacts = [];
    directory.rooms = [];
    directory.budgets = new Map();
  },
});
