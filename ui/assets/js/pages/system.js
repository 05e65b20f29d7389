// The system page: version, storage and index in use, associations now,
// disk or bucket usage (GET /api/system, docs/api.md), and what /readyz
// says of each dependency.

import * as api from '../api.js';
import { formatBytes, formatDuration, formatNumber, h, notice, replace } from '../dom.js';
import { every, unavailable, updated } from './live.js';

export async function render(ctx) {
  ctx.setTitle('System');
  const info = h('div', {});
  const ready = h('section', { 'aria-labelledby': 'ready-h' });
  replace(ctx.main, h('h1', {}, 'System'), info, ready);
  await every(10000, ctx.signal, async () => {
    await Promise.all([system(ctx, info), readiness(ctx, ready)]);
    info.dataset.state = 'loaded';
  });
}

async function system(ctx, el) {
  let s;
  try {
    s = await api.getJSON('/api/system', { optional: true, signal: ctx.signal });
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    replace(el, ctx.config.version ? h('p', {}, `pacsd ${ctx.config.version}`) : null,
      err instanceof api.NotAvailableError ? unavailable('The system summary', 'GET /api/system') : notice('error', 'The system summary could not be read', err.message));
    return;
  }
  const fact = (k, v) => [h('dt', {}, k), h('dd', {}, v ?? '—')];
  const usage = (u) => (u ? `${formatBytes(u.used_bytes)} used${u.free_bytes != null ? `, ${formatBytes(u.free_bytes)} free` : ''}` : '—');
  replace(el,
    h('dl', { class: 'facts' },
      fact('Version', s.version),
      fact('Up for', formatDuration(s.uptime_seconds)),
      fact('AE title', s.ae_title),
      fact('DIMSE', s.dimse_addr),
      fact('HTTP', s.http_addr),
      fact('Associations now', s.associations ? `${formatNumber(s.associations.active)}${s.associations.max ? ` of ${formatNumber(s.associations.max)}` : ''}` : '—'),
      fact('Storage', s.storage ? `${s.storage.kind}: ${s.storage.location}` : '—'),
      fact('Storage use', usage(s.storage)),
      fact('Spool backlog', s.spool ? `${formatNumber(s.spool.objects)} objects, ${formatBytes(s.spool.bytes)}` : 'no spool'),
      fact('Index', s.index ? `${s.index.kind}: ${s.index.location}` : '—'),
      fact('Held', s.index?.counts ? `${formatNumber(s.index.counts.patients)} patients, ${formatNumber(s.index.counts.studies)} studies, ${formatNumber(s.index.counts.series)} series, ${formatNumber(s.index.counts.instances)} instances` : '—')),
    updated());
}

// readiness shows /readyz, which answers JSON (one entry per dependency)
// or, from an older pacsd, a line of text.
async function readiness(ctx, el) {
  let body;
  let ok;
  try {
    const resp = await fetch('/readyz', { headers: { Accept: 'application/json' }, signal: ctx.signal, cache: 'no-store' });
    ok = resp.ok;
    const text = await resp.text();
    try {
      body = JSON.parse(text);
    } catch {
      body = text.trim();
    }
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    replace(el, h('h2', { id: 'ready-h' }, 'Readiness'), notice('error', 'pacsd did not answer /readyz', err.message));
    return;
  }
  const rows = typeof body === 'object' && body !== null
    ? Object.entries(body.checks ?? body).filter(([, v]) => typeof v === 'object' && v !== null).map(([k, v]) => h('tr', {},
      h('th', { scope: 'row' }, k), h('td', { class: v.ok === false || v.status === 'fail' ? 'state-failed' : 'state-ok' }, v.status ?? (v.ok === false ? 'failing' : 'ok')), h('td', {}, v.error ?? v.detail ?? '')))
    : [];
  replace(el, h('h2', { id: 'ready-h' }, 'Readiness'),
    h('p', { class: ok ? 'state-ok' : 'state-failed' }, ok ? 'Ready' : 'Not ready'),
    rows.length ? h('table', { class: 'list' }, h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Dependency'), h('th', { scope: 'col' }, 'State'), h('th', { scope: 'col' }, 'Detail'))), h('tbody', {}, rows))
      : h('p', { class: 'muted' }, typeof body === 'string' ? body : JSON.stringify(body)));
}
