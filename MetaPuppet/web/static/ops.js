// MetaPuppet dashboard, Operations panel: a live chart of messages per minute and handler
// latency (drawn here as SVG, no library), proactive messages and their states, scheduled
// jobs, plugins and their panels. It reads /api/stats, /api/outbox, /api/jobs and
// /api/plugins with the token app.js keeps in sessionStorage; text is set with textContent.
'use strict';

(() => {
  const TOKEN_KEY = 'metapuppet.token';
  const REFRESH_MS = 5000;
  const SVG = 'http://www.w3.org/2000/svg';
  const $ = (id) => document.getElementById(id);

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (key === 'class') node.className = value;
      else node.setAttribute(key, String(value));
    }
    for (const child of children) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child ?? '')));
    }
    return node;
  }

  function svg(tag, attrs = {}) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (key === 'class') node.setAttribute('class', value);
      else node.setAttribute(key, String(value));
    }
    return node;
  }

  async function get(path) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) return null;
    const response = await fetch(path, { headers: { Authorization: `Bearer ${token}` }, cache: 'no-store' });
    if (!response.ok) return null;
    return response.json();
  }

  const when = (seconds) => (seconds ? new Date(seconds * 1000).toLocaleTimeString() : '–');

  function drawChart(series) {
    const chart = $('ops-chart');
    chart.replaceChildren();
    const width = 600;
    const height = 130;
    const top = 12;
    const bottom = 16;
    const plot = height - top - bottom;
    const step = width / series.length;
    const most = Math.max(1, ...series.map((m) => m.messages));
    const slowest = Math.max(1, ...series.map((m) => m.avg_ms || 0));
    series.forEach((minute, i) => {
      const h = (minute.messages / most) * plot;
      const bar = svg('rect', { class: 'bar', x: i * step + 1, y: top + plot - h, width: Math.max(1, step - 2), height: h });
      const title = svg('title');
      title.textContent = `${new Date(minute.minute * 1000).toLocaleTimeString()}: ${minute.messages} messages` +
        (minute.avg_ms === null ? '' : `, handler ${minute.avg_ms} ms on average, ${minute.max_ms} ms at most`);
      bar.append(title);
      chart.append(bar);
    });
    const points = series
      .map((m, i) => (m.avg_ms === null ? null : `${i * step + step / 2},${top + plot - (m.avg_ms / slowest) * plot}`))
      .filter((p) => p !== null);
    if (points.length > 1) chart.append(svg('polyline', { class: 'latency', points: points.join(' ') }));
    const left = svg('text', { class: 'axis', x: 4, y: 10 });
    left.textContent = `${most} msg/min`;
    const right = svg('text', { class: 'axis', x: width - 4, y: 10, 'text-anchor': 'end' });
    right.textContent = `avg handler ${slowest} ms`;
    const axis = svg('text', { class: 'axis', x: 4, y: height - 3 });
    axis.textContent = '60 min ago';
    const now = svg('text', { class: 'axis', x: width - 4, y: height - 3, 'text-anchor': 'end' });
    now.textContent = 'now';
    chart.append(left, right, axis, now);
    const last = series[series.length - 1];
    const total = series.reduce((sum, m) => sum + m.messages, 0);
    $('ops-chart-summary').textContent = total
      ? `${total} messages in the last hour; this minute ${last.messages}` +
        (last.avg_ms === null ? '.' : `, handler ${last.avg_ms} ms on average (${last.max_ms} ms at most).`)
      : 'No messages in the last hour.';
  }

  function renderOutbox(data) {
    const counts = Object.entries(data.counts).filter(([, n]) => n).map(([state, n]) => `${n} ${state}`);
    $('ops-outbox-counts').textContent = counts.length ? `(${counts.join(', ')})` : '(none)';
    $('ops-outbox').replaceChildren(
      ...data.messages.map((m) =>
        el('tr', {},
          el('td', { class: `state-${m.state}` }, m.state),
          el('td', {}, m.contact),
          el('td', {}, m.preview),
          el('td', {}, m.code && m.state !== 'expired' ? `${m.code}: ${m.reason || ''}` : m.reason || ''),
          el('td', {}, when(m.updated_at))),
      ),
    );
  }

  function renderJobs(data) {
    const items = data.jobs.map((job) => {
      const last = job.last ? `; last ${job.last.outcome} (${when(job.last.finished_at)})` : '';
      return el('li', {}, el('span', { class: 'name' }, job.id, el('span', { class: 'id' }, `${job.schedule}${last}`)),
        el('span', { class: 'count' }, `next ${when(job.next_run)}`));
    });
    $('ops-jobs').replaceChildren(...(items.length ? items : [el('li', { class: 'hint' }, 'No scheduled job.')]));
  }

  function renderPlugins(data) {
    const items = data.plugins.map((p) => {
      const badge = p.status === 'loaded' ? (p.errors ? 'warn' : 'ok') : p.status === 'error' ? 'bad' : 'warn';
      const detail = p.error || (p.errors ? `${p.errors} errors; last: ${p.last_error}` : p.description || '');
      return el('li', {}, el('span', { class: 'name' }, p.name, el('span', { class: 'id' }, detail)),
        el('span', { class: `badge ${badge}` }, p.status));
    });
    $('ops-plugins').replaceChildren(...(items.length ? items : [el('li', { class: 'hint' }, 'No plugin loaded.')]));
    $('ops-panels').replaceChildren(
      ...data.panels.map((panel) => {
        const box = el('div', {}, el('h3', {}, `${panel.title} (${panel.plugin})`));
        if (panel.error) {
          box.append(el('p', { class: 'error' }, panel.error));
          return box;
        }
        const rows = panel.rows || [];
        const keys = [...new Set(rows.flatMap((r) => Object.keys(r)))];
        box.append(
          el('table', {},
            el('thead', {}, el('tr', {}, ...keys.map((k) => el('th', { scope: 'col' }, k)))),
            el('tbody', {}, ...rows.map((r) => el('tr', {}, ...keys.map((k) => el('td', {}, typeof r[k] === 'object' ? JSON.stringify(r[k]) : r[k])))))),
        );
        return box;
      }),
    );
  }

  async function refresh() {
    const dashboard = $('dashboard');
    if (!dashboard || dashboard.hidden || !$('ops')) return;
    try {
      const [stats, outbox, jobs, plugins] = await Promise.all([
        get('/api/stats'), get('/api/outbox?limit=20'), get('/api/jobs'), get('/api/plugins'),
      ]);
      if (stats) drawChart(stats.per_minute);
      if (outbox) renderOutbox(outbox);
      if (jobs) renderJobs(jobs);
      if (plugins) renderPlugins(plugins);
    } catch {
      // the main dashboard reports connection trouble; try again at the next tick
    }
  }

  function start() {
    const dashboard = $('dashboard');
    if (!dashboard) return;
    // refresh at once when the dashboard appears (sign-in), then every few seconds
    new MutationObserver(() => { if (!dashboard.hidden) refresh(); })
      .observe(dashboard, { attributes: true, attributeFilter: ['hidden'] });
    setInterval(refresh, REFRESH_MS);
    refresh();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
