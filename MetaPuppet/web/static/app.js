// MetaPuppet dashboard: plain JavaScript, no framework, nothing loaded from the internet.
// Data comes from the REST API (/api/...), live events from /api/events/stream
// (server-sent events read with fetch, so the token travels in a header, never in the URL).
// Text from the bot is only ever set with textContent.
'use strict';

(() => {
  const TOKEN_KEY = 'metapuppet.token';
  const FEED_LIMIT = 300;
  const REFRESH_MS = 5000;

  const $ = (id) => document.getElementById(id);
  const state = {
    token: null,
    permissions: [],
    bots: [],
    bot: null, // the chosen bot when several are connected
    contacts: [],
    rooms: [],
    names: new Map(), // id -> display name, for feed lines
    stream: null, // AbortController of the live stream
    timers: [],
    retryMs: 1000,
  };

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.message) || `HTTP ${status}`);
      this.status = status;
      this.code = body && body.error;
    }
  }

  function el(tag, attrs = {}, ...children) {
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

  async function api(path, options = {}) {
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

  function botQuery(extra = {}) {
    const params = new URLSearchParams(extra);
    if (state.bot) params.set('bot', state.bot);
    const text = params.toString();
    return text ? `?${text}` : '';
  }

  const can = (permission) => state.permissions.includes(permission);

  function setConnection(text, kind) {
    const node = $('connection');
    node.textContent = text;
    node.className = `connection ${kind || ''}`;
  }

  function ago(seconds) {
    if (seconds === null || seconds === undefined) return '—';
    const s = Math.max(0, Math.round(Date.now() / 1000 - seconds));
    if (s < 60) return `${s} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    return `${Math.floor(s / 3600)} h ago`;
  }

  const clock = (ms) => new Date(ms).toLocaleTimeString();

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
    if (can('read')) {
      await Promise.all([loadBots(), loadDirectory(), loadClients(), loadDialogs(), loadRecent()]);
      openStream();
      state.timers.push(setInterval(() => { loadClients(); loadDialogs(); loadBots(); }, REFRESH_MS));
    } else {
      setConnection('Signed in (this token may not read events)');
    }
  }

  function signOut(message) {
    if (state.stream) state.stream.abort();
    state.stream = null;
    state.timers.forEach(clearInterval);
    state.timers = [];
    state.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    $('dashboard').hidden = true;
    $('sign-out').hidden = true;
    $('bot-picker').hidden = true;
    $('login').hidden = false;
    const error = $('login-error');
    error.textContent = message || '';
    error.hidden = !message;
    setConnection('Signed out');
    $('token').value = '';
    $('token').focus();
  }

  function handleFailure(error, where) {
    if (error instanceof ApiError && error.status === 401) {
      signOut('The token is no longer accepted. Sign in again.');
      return;
    }
    const text = error instanceof ApiError ? error.message : 'the server cannot be reached';
    setConnection(`${where}: ${text}`, 'down');
  }

  // ------------------------------------------------------------------ bots

  async function loadBots() {
    try {
      const { bots } = await api('/api/bots');
      state.bots = bots;
      renderBots();
    } catch (error) {
      handleFailure(error, 'Bots');
    }
  }

  function renderBots() {
    const list = $('bots');
    list.replaceChildren();
    if (state.bots.length === 0) {
      list.append(el('li', { class: 'hint', text: 'No bot has connected yet. Start the Node client.' }));
    }
    for (const bot of state.bots) {
      const login = bot.logged_in
        ? el('span', { class: 'badge ok', text: 'logged in' })
        : bot.scan
          ? el('span', { class: 'badge warn', text: 'scan needed' })
          : el('span', { class: 'badge warn', text: 'not logged in' });
      const link = bot.connected
        ? el('span', { class: `badge ${bot.status === 'stalled' ? 'warn' : 'ok'}`, text: bot.status || 'online' })
        : el('span', { class: 'badge bad', text: 'offline' });
      const item = el('li', {}, el('strong', { text: bot.bot }), link, login);
      if (bot.user && bot.user.name) item.append(el('div', { class: 'hint', text: `as ${bot.user.name}` }));
      if (bot.scan && bot.scan.qr_image) {
        item.append(
          el('p', { text: `Scan with WeChat to log in (${bot.scan.status_name || 'waiting'}):` }),
          el('img', { class: 'qr', src: bot.scan.qr_image, alt: `QR code to log bot ${bot.bot} in` }),
        );
      } else if (bot.scan) {
        item.append(el('div', { class: 'hint', text: `Scan status: ${bot.scan.status_name || bot.scan.status}` }));
      }
      list.append(item);
    }
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

  // ------------------------------------------------------------------ contacts and rooms

  async function loadDirectory() {
    try {
      const [contacts, rooms] = await Promise.all([
        api(`/api/contacts${botQuery()}`),
        api(`/api/rooms${botQuery()}`),
      ]);
      state.contacts = contacts.contacts.filter((c) => !c.self);
      state.rooms = rooms.rooms;
      for (const c of contacts.contacts) state.names.set(c.id, c.alias || c.name || c.id);
      for (const r of state.rooms) state.names.set(r.id, r.topic || r.id);
      renderDirectory();
      renderTargets();
      relabelFeed();
    } catch (error) {
      if (error instanceof ApiError && error.code === 'bot_not_connected') {
        state.contacts = [];
        state.rooms = [];
        renderDirectory();
        renderTargets();
        return;
      }
      handleFailure(error, 'Contacts');
    }
  }

  function matches(query, ...fields) {
    if (!query) return true;
    const needle = query.toLocaleLowerCase();
    return fields.some((f) => f && String(f).toLocaleLowerCase().includes(needle));
  }

  function chooseTarget(value) {
    $('send-to').value = value;
    $('send-text').focus();
  }

  function renderDirectory() {
    const query = $('search').value.trim();
    const contacts = state.contacts.filter((c) => matches(query, c.name, c.alias, c.id));
    const rooms = state.rooms.filter((r) => matches(query, r.topic, r.id));
    $('contacts-count').textContent = `(${contacts.length})`;
    $('rooms-count').textContent = `(${rooms.length})`;
    $('contacts').replaceChildren(
      ...contacts.map((c) => {
        const label = c.alias ? `${c.alias} (${c.name})` : c.name || c.id;
        return el('li', {},
          el('span', { class: 'name' }, label, el('span', { class: 'id', text: c.id })),
          can('send') ? el('button', {
            type: 'button', text: 'Message', 'aria-label': `Message ${label}`,
            onclick: () => chooseTarget(`contact:${c.id}`),
          }) : null);
      }),
    );
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

  function renderTargets() {
    const select = $('send-to');
    const chosen = select.value;
    $('send-contacts').replaceChildren(
      ...state.contacts.map((c) => el('option', { value: `contact:${c.id}`, text: c.alias || c.name || c.id })),
    );
    $('send-rooms').replaceChildren(
      ...state.rooms.map((r) => el('option', { value: `room:${r.id}`, text: r.topic || r.id })),
    );
    if ([...select.options].some((o) => o.value === chosen)) select.value = chosen;
  }

  // ------------------------------------------------------------------ sending

  async function send(event) {
    event.preventDefault();
    const target = $('send-to').value;
    const text = $('send-text').value;
    const status = $('send-status');
    if (!target || !text.trim()) {
      status.textContent = 'Choose a recipient and write a message.';
      status.className = 'status bad';
      return;
    }
    const split = target.indexOf(':');
    const body = { to: target.slice(split + 1), kind: target.slice(0, split), text };
    if (state.bot) body.bot = state.bot;
    const button = $('send-button');
    button.disabled = true;
    status.textContent = 'Sending…';
    status.className = 'status';
    try {
      await api('/api/send', { method: 'POST', body });
      status.textContent = `Sent to ${state.names.get(body.to) || body.to}.`;
      status.className = 'status good';
      $('send-text').value = '';
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) {
        handleFailure(error, 'Send');
        return;
      }
      status.textContent = `Not sent: ${error.message}`;
      status.className = 'status bad';
    } finally {
      button.disabled = false;
    }
  }

  // ------------------------------------------------------------------ clients and dialogs

  // A puppet that cannot get through says so in its heartbeat ("cannot reach WeChat: …").
  function clientStatus(c) {
    const status = c.status || 'online';
    const puppet = c.puppet;
    if (!puppet || puppet.state === 'running' || !puppet.message) return status;
    return `${status} · ${puppet.message}`;
  }

  async function loadClients() {
    try {
      const { clients } = await api('/api/clients');
      $('clients').replaceChildren(
        ...clients.map((c) => el('tr', {},
          el('td', { text: c.role }),
          el('td', { text: c.bot || '—' }),
          el('td', { text: c.remote || '—' }),
          el('td', { text: clientStatus(c) }),
          el('td', { text: ago(c.connected_at) }),
          el('td', { text: c.role === 'puppet' ? ago(c.last_heartbeat) : '—' }))),
      );
    } catch (error) {
      handleFailure(error, 'Clients');
    }
  }

  async function loadDialogs() {
    try {
      const { dialogs } = await api('/api/dialogs');
      $('dialogs-empty').hidden = dialogs.length > 0;
      $('dialogs').replaceChildren(
        ...dialogs.map((d) => {
          const title = d.name || d.dialog || d.id || 'dialog';
          const details = Object.entries(d)
            .filter(([key]) => !['name', 'dialog', 'id'].includes(key))
            .map(([key, value]) => `${key}: ${typeof value === 'object' ? JSON.stringify(value) : value}`)
            .join(' · ');
          return el('li', {}, el('span', { class: 'name' }, el('strong', { text: title }),
            el('span', { class: 'id', text: details })));
        }),
      );
    } catch (error) {
      handleFailure(error, 'Dialogs');
    }
  }

  // ------------------------------------------------------------------ the live feed

  async function loadRecent() {
    try {
      const { events } = await api('/api/events?limit=100');
      for (const event of events) addToFeed(event);
    } catch (error) {
      handleFailure(error, 'Feed');
    }
  }

  const seen = new Set();
  const feedEvents = new WeakMap(); // feed line -> its event, to relabel it once names are known
  const lookedUp = new Set(); // ids the directory was reloaded for (once each)

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

  function addToFeed(event) {
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
      actions.append(el('button', {
        type: 'button', class: 'secondary', text: 'Reply', 'aria-label': `Reply to ${who}`,
        onclick: () => { ensureTarget(target, p); chooseTarget(target); },
      }));
    }
    if (event.name === 'friendship' && p.typeName === 'Receive' && can('accept')) {
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
    if (['room-join', 'room-leave', 'room-topic', 'friendship', 'login'].includes(event.name)) scheduleDirectory();
    if (['login', 'logout', 'scan'].includes(event.name)) loadBots();
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

  function ensureTarget(target, payload) {
    const select = $('send-to');
    if ([...select.options].some((o) => o.value === target)) return;
    const label = payload.roomId ? (payload.room && payload.room.topic) || payload.roomId
      : (payload.talker && payload.talker.name) || payload.talkerId;
    $(payload.roomId ? 'send-rooms' : 'send-contacts').append(el('option', { value: target, text: label }));
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

  let directoryTimer = null;
  function scheduleDirectory() {
    clearTimeout(directoryTimer);
    directoryTimer = setTimeout(loadDirectory, 500);
  }

  function openStream() {
    const controller = new AbortController();
    state.stream = controller;
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
    state.retryMs = 1000;
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
    if (controller.signal.aborted || state.stream !== controller) return undefined;
    setConnection('Reconnecting…', 'down');
    const wait = state.retryMs;
    state.retryMs = Math.min(state.retryMs * 2, 15000);
    setTimeout(() => {
      if (state.stream === controller && !controller.signal.aborted) {
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
    if (kind === 'events') parsed.forEach(addToFeed);
    else if (kind === 'clients') { loadClients(); loadBots(); }
    else if (kind === 'lagged') loadRecent();
  }

  // ------------------------------------------------------------------ wiring

  function start() {
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
    $('send-form').addEventListener('submit', send);
    $('send-text').addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) $('send-form').requestSubmit();
    });
    $('search').addEventListener('input', renderDirectory);
    $('directory-refresh').addEventListener('click', loadDirectory);
    $('feed-clear').addEventListener('click', () => {
      $('feed').replaceChildren();
      $('feed-empty').hidden = false;
    });
    $('bot-select').addEventListener('change', (event) => {
      state.bot = event.target.value;
      loadDirectory();
    });
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
})();
