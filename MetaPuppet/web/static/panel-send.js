// Send a message to a contact or a room. Rooms are offered only where the channel has them;
// on a channel with a send budget the chosen contact's window is shown, and a send it does
// not allow is refused by the server with the reason (nothing is sent).
import {
  $, ApiError, api, channelCan, currentBot, describeBudget, el, handleFailure,
  registerPanel, sendBudgetRules, state,
} from './core.js';
import { directory } from './panel-directory.js';

let roomsGroup = null; // the "Rooms" group of the recipient list, left out without rooms

function renderTargets() {
  const select = $('send-to');
  const chosen = select.value;
  $('send-contacts').replaceChildren(
    ...directory.contacts.map((c) => el('option', { value: `contact:${c.id}`, text: c.alias || c.name || c.id })),
  );
  const rooms = channelCan('rooms');
  if (rooms && !roomsGroup.isConnected) select.append(roomsGroup);
  else if (!rooms) roomsGroup.remove();
  roomsGroup.replaceChildren(
    ...(rooms ? directory.rooms : []).map((r) => el('option', { value: `room:${r.id}`, text: r.topic || r.id })),
  );
  if ([...select.options].some((o) => o.value === chosen)) select.value = chosen;
  showBudget();
}

// Makes sure a recipient picked from the feed is in the list (a contact newer than it).
export function ensureTarget(target, label) {
  const select = $('send-to');
  if ([...select.options].some((o) => o.value === target)) return;
  const group = target.startsWith('room:') ? roomsGroup : $('send-contacts');
  if (group.isConnected) group.append(el('option', { value: target, text: label }));
}

let budgetRequest = 0;
async function showBudget() {
  const line = $('send-budget');
  const target = $('send-to').value;
  const bot = currentBot();
  if (!sendBudgetRules() || !bot || !target.startsWith('contact:')) {
    line.hidden = true;
    return;
  }
  const contact = target.slice('contact:'.length);
  const asked = ++budgetRequest;
  try {
    const answer = await api(`/api/bots/${encodeURIComponent(bot.bot)}/budget/${encodeURIComponent(contact)}`);
    if (asked !== budgetRequest) return;
    line.textContent = describeBudget(answer.budget);
    line.className = `hint budget ${answer.budget && answer.budget.open ? 'open' : 'closed'}`;
    line.hidden = !answer.budget;
  } catch (error) {
    line.hidden = true;
    handleFailure(error, 'Send budget');
  }
}

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
    showBudget();
  }
}

registerPanel({
  name: 'send',
  init() {
    roomsGroup = $('send-rooms');
    directory.listeners.push(renderTargets);
    $('send-form').addEventListener('submit', send);
    $('send-to').addEventListener('change', showBudget);
    $('send-text').addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) $('send-form').requestSubmit();
    });
  },
  onBotChanged: renderTargets,
});
