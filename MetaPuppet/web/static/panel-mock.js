// The mock console: on the offline mock puppet nobody can type into WeChat, so a mocked
// contact (found by name or created) says something to the bot, in a room, or asks to be a
// friend (POST /api/mock/say, /api/mock/friend). Shown only for a bot on the mock channel,
// and only to tokens that may send.
import {
  $, ApiError, api, can, channel, currentBot, handleFailure, registerPanel, state,
} from './core.js';

function visible() {
  return channel() === 'mock' && can('send') && Boolean(currentBot());
}

function show() {
  $('mock-panel').hidden = !visible();
}

function status(text, kind) {
  const node = $('mock-status');
  node.textContent = text;
  node.className = `status ${kind || ''}`;
}

async function run(path, body, done) {
  if (state.bot) body.bot = state.bot;
  const buttons = [$('mock-say'), $('mock-friend')];
  buttons.forEach((b) => { b.disabled = true; });
  status('Sending…');
  try {
    const answer = await api(path, { method: 'POST', body });
    status(done(answer), 'good');
    return answer;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) handleFailure(error, 'Mock console');
    else status(`Not sent: ${error.message}`, 'bad');
    return null;
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
  }
}

function speaker() {
  const name = $('mock-as').value.trim();
  if (!name) {
    status('Say who speaks (a mocked contact\'s name).', 'bad');
    $('mock-as').focus();
  }
  return name;
}

async function say(event) {
  event.preventDefault();
  const name = speaker();
  const text = $('mock-text').value;
  if (!name) return;
  if (!text.trim()) {
    status('Write what they say.', 'bad');
    $('mock-text').focus();
    return;
  }
  const room = $('mock-room').value.trim();
  const body = { as: name, text };
  if (room) {
    body.room = room;
    body.mention = $('mock-mention').checked;
  }
  const answer = await run('/api/mock/say', body, (a) => `${a.contact.name}${a.room ? ` in ${a.room.topic}` : ''} said it; `
    + 'the answer shows in the live feed.');
  if (answer) $('mock-text').value = '';
}

async function friend() {
  const name = speaker();
  if (!name) return;
  await run('/api/mock/friend', { as: name, hello: $('mock-text').value },
    (a) => `${a.contact.name} asked to be friends.`);
}

registerPanel({
  name: 'mock',
  init() {
    $('mock-form').addEventListener('submit', say);
    $('mock-friend').addEventListener('click', friend);
    $('mock-room').addEventListener('input', () => {
      $('mock-mention').disabled = !$('mock-room').value.trim();
    });
    $('mock-text').addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) $('mock-form').requestSubmit();
    });
  },
  load: show,
  onBots: show,
  onSignOut() {
    $('mock-panel').hidden = true;
    status('');
  },
});
