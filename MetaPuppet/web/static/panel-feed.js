// The live feed: messages and other bot events as they happen, newest first. Reply picks
// the sender (or the room) in the send form; a friend request has Accept where the token
// and the channel allow it.
import {
  $, api, can, channelCan, chooseTarget, clock, el, handleFailure, registerPanel, state,
} from './core.js';
import { directory, scheduleDirectory } from './panel-directory.js';
import { ensureTarget } from './panel-send.js';

const FEED_LIMIT = 300;
const seen = new Set();
const feedEvents = new WeakMap(); // feed line -> its event, to relabel it once names are known
const lookedUp = new Set(); // ids the directory was reloaded for (once each)

export async function loadRecent() {
  try {
    const { events } = await api('/api/events?limit=100');
    for (const event of events) addToFeed(event);
  } catch (error) {
    handleFailure(error, 'Feed');
  }
}

// Names that events carry themselves: a message names its talker and its room.
function learnNames(p) {
  for (const ref of [p.talker, p.contact]) {
    if (ref && ref.id && ref.name && !state.names.has(ref.id)) state.names.set(ref.id, ref.name);
  }
  if (p.room && p.room.id && p.room.topic && !state.names.has(p.room.id)) state.names.set(p.room.id, p.room.topic);
}

// `unresolved` collects ids that had no name yet (a contact newer than the loaded list).
function describe(event, unresolved = new Set()) {
  const p = event.payload || {};
  const name = (id) => {
    const known = state.names.get(id);
    if (known) return known;
    if (id) unresolved.add(id);
    return id;
  };
  switch (event.name) {
    case 'message': {
      const who = p.self ? `${(p.talker && p.talker.name) || 'bot'} → ${p.room ? p.room.topic || p.roomId : name(p.listenerId)}`
        : `${(p.talker && p.talker.name) || name(p.talkerId)}${p.room ? ` in ${p.room.topic || p.roomId}` : ''}`;
      const text = p.text || (p.typeName ? `[${p.typeName}${p.filename ? `: ${p.filename}` : ''}]` : '');
      return { who, text, self: Boolean(p.self) };
    }
    case 'friendship':
      return { who: (p.contact && p.contact.name) || name(p.contactId), text: `friend request (${p.typeName || p.type})${p.hello ? `: ${p.hello}` : ''}` };
    case 'room-join':
      return { who: p.topic || p.roomId, text: `joined: ${(p.inviteeIdList || []).map(name).join(', ')}` };
    case 'room-leave':
      return { who: p.topic || p.roomId, text: `left: ${(p.leaverIdList || []).map(name).join(', ')}` };
    case 'room-topic':
      return { who: p.oldTopic || p.roomId, text: `topic changed to ${p.topic}` };
    case 'room-invite':
      return { who: name(p.inviterId), text: `invites the bot to ${p.topic || 'a room'}` };
    case 'login':
      return { who: p.name || p.id, text: 'logged in' };
    case 'logout':
      return { who: p.name || p.id, text: `logged out${p.reason ? `: ${p.reason}` : ''}` };
    case 'scan':
      return { who: event.bot, text: `scan status ${p.statusName || p.status}` };
    case 'error':
      return { who: event.bot, text: `${p.name || 'Error'}: ${p.message || ''}` };
    default:
      return { who: event.bot, text: event.name };
  }
}

export function addToFeed(event) {
  if (seen.has(event.id)) return;
  seen.add(event.id);
  if (event.name === 'heartbeat' && !$('feed-heartbeats').checked) return;
  const p = event.payload || {};
  learnNames(p);
  const unresolved = new Set();
  const { who, text, self } = describe(event, unresolved);
  const item = el('li', { class: self ? 'self' : '', 'data-event': event.name },
    el('time', { datetime: new Date(event.ts).toISOString(), text: clock(event.ts) }),
    el('span', { class: 'kind', text: state.bots.length > 1 ? `${event.bot} · ${event.name}` : event.name }),
    el('span', { class: 'text' }, el('span', { class: 'who', text: who }), ` ${text}`));
  feedEvents.set(item, event);
  if (unresolved.size > 0) {
    // shown with a raw id for now; the directory is loaded again (once per id) and the line
    // relabelled when the name is known
    item.dataset.unresolved = '1';
    const fresh = [...unresolved].filter((id) => !lookedUp.has(id));
    if (fresh.length > 0) {
      fresh.forEach((id) => lookedUp.add(id));
      if (lookedUp.size > 5000) lookedUp.clear();
      scheduleDirectory();
    }
  }
  const actions = el('span', {});
  if (event.name === 'message' && !p.self && can('send')) {
    const target = p.roomId ? `room:${p.roomId}` : `contact:${p.talkerId}`;
    const label = p.roomId ? (p.room && p.room.topic) || p.roomId : (p.talker && p.talker.name) || p.talkerId;
    actions.append(el('button', {
      type: 'button', class: 'secondary', text: 'Reply', 'aria-label': `Reply to ${who}`,
      onclick: () => { ensureTarget(target, label); chooseTarget(target); },
    }));
  }
  if (event.name === 'friendship' && p.typeName === 'Receive' && can('accept') && channelCan('friendships')) {
    actions.append(el('button', {
      type: 'button', class: 'secondary', text: 'Accept', 'aria-label': `Accept the friend request of ${who}`,
      onclick: (e) => acceptFriendship(e.currentTarget, event),
    }));
  }
  item.append(actions);
  const feed = $('feed');
  feed.prepend(item);
  while (feed.children.length > FEED_LIMIT) feed.lastElementChild.remove();
  $('feed-empty').hidden = true;
}

// Lines shown before their contact's name was known get it now.
function relabelFeed() {
  for (const item of $('feed').querySelectorAll('li[data-unresolved]')) {
    const event = feedEvents.get(item);
    if (!event) continue;
    const unresolved = new Set();
    const { who, text } = describe(event, unresolved);
    const span = item.querySelector('.text');
    span.replaceChildren(el('span', { class: 'who', text: who }), ` ${text}`);
    if (unresolved.size === 0) delete item.dataset.unresolved;
  }
}

async function acceptFriendship(button, event) {
  button.disabled = true;
  try {
    await api(`/api/friendships/${encodeURIComponent(event.payload.id)}/accept`, {
      method: 'POST', body: { bot: event.bot },
    });
    button.textContent = 'Accepted';
  } catch (error) {
    button.disabled = false;
    handleFailure(error, 'Accept');
  }
}

registerPanel({
  name: 'feed',
  init() {
    directory.listeners.push(relabelFeed);
    $('feed-clear').addEventListener('click', () => {
      $('feed').replaceChildren();
      $('feed-empty').hidden = false;
    });
  },
  load: loadRecent,
  onEvent: addToFeed,
});
