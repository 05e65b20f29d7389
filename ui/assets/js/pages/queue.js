// The forwarding queue: per destination, what is pending, in flight and
// failed, with the reasons of failures and a retry (GET /api/queue,
// docs/api.md).

import * as api from '../api.js';
import { personName } from '../dicom.js';
import { announce, formatDuration, formatNumber, formatTime, h, notice, replace } from '../dom.js';
import { every, keepFocus, load, unavailable, updated } from './live.js';

export async function render(ctx) {
  const body = h('div', {});
  const messages = h('div', {});
  replace(ctx.main, h('h1', {}, 'Queue'), messages, body);
  ctx.setTitle('Queue');
  await every(5000, ctx.signal, async () => {
    const q = await load(ctx, body, '/api/queue', 'The forwarding queue');
    const dests = q?.destinations ?? [];
    const failed = await Promise.all(dests.filter((d) => d.failed > 0).map(async (d) => {
      try {
        const t = await api.getJSON(`/api/queue/${encodeURIComponent(d.name)}/tasks?state=failed&limit=50`, { optional: true, signal: ctx.signal });
        return [d.name, t?.tasks ?? []];
      } catch {
        return [d.name, null];
      }
    }));
    keepFocus(body, () => draw(ctx, dests, new Map(failed), messages));
    body.dataset.state = 'loaded';
  });
}

function draw(ctx, dests, failed, messages) {
  if (!dests.length) return [notice('info', 'No destinations are configured.'), updated()];
  const table = h('table', { class: 'list queue' },
    h('caption', { class: 'visually-hidden' }, 'Forwarding queue by destination'),
    h('thead', {}, h('tr', {},
      ['Destination', 'Pending', 'In flight', 'Failed', 'Sent (24 h)', 'Oldest pending', 'Last error', ''].map((c, i) => h('th', { scope: 'col', class: i >= 1 && i <= 4 ? 'num' : null }, c)))),
    h('tbody', {}, dests.map((d) => h('tr', { dataset: { destination: d.name } },
      h('th', { scope: 'row' }, d.name, d.address ? h('div', { class: 'muted' }, d.address) : null),
      h('td', { class: 'num' }, formatNumber(d.pending)),
      h('td', { class: 'num' }, formatNumber(d.in_flight)),
      h('td', { class: `num ${d.failed ? 'state-failed' : ''}` }, formatNumber(d.failed)),
      h('td', { class: 'num' }, formatNumber(d.done_24h)),
      h('td', {}, d.pending ? formatDuration(d.oldest_pending_seconds) : '—'),
      h('td', {}, d.last_error ?? ''),
      h('td', {}, ctx.can('write') && d.failed > 0
        ? h('button', { type: 'button', class: 'secondary', dataset: { key: `retry:${d.name}` }, onclick: () => retry(d.name, messages) }, `Retry ${d.failed} failed`)
        : null)))));
  const details = [];
  for (const [name, tasks] of failed) {
    if (!tasks?.length) continue;
    details.push(h('h2', {}, `Failed for ${name}`), h('table', { class: 'list' },
      h('thead', {}, h('tr', {}, ['Study', 'Patient', 'Attempts', 'Last attempt', 'Reason'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, tasks.map((t) => h('tr', {},
        h('td', {}, h('a', { href: `#/study/${encodeURIComponent(t.study)}` }, t.study)),
        h('td', {}, personName(t.patient ?? '')),
        h('td', { class: 'num' }, formatNumber(t.attempts)),
        h('td', {}, formatTime(t.last_attempt)),
        h('td', {}, t.last_error ?? ''))))));
  }
  return [table, ...details, updated()];
}

async function retry(name, messages) {
  try {
    await api.sendJSON('POST', `/api/queue/${encodeURIComponent(name)}/retry`, { failed: true }, { optional: true });
    replace(messages, notice('ok', `The failed tasks for ${name} are queued again.`));
    announce(`Retrying ${name}`);
  } catch (err) {
    replace(messages, err instanceof api.NotAvailableError ? unavailable('Retrying', `POST /api/queue/${name}/retry`) : notice('error', 'Retry failed', err.message));
  }
}
