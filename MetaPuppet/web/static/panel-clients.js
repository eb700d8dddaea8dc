// Connected clients (puppets and web clients) and the dialogs in progress.
import { $, ago, api, el, handleFailure, registerPanel } from './core.js';

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

registerPanel({ name: 'clients', load: loadClients, refreshMs: 5000, onClients: loadClients });
registerPanel({ name: 'dialogs', load: loadDialogs, refreshMs: 5000 });
