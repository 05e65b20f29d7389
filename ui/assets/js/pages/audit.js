// The audit trail: who did what to which patient's images, searched by
// patient, study, user and time (GET /api/audit, docs/api.md).

import * as api from '../api.js';
import { field, formatTime, h, notice, replace } from '../dom.js';
import { unavailable } from './live.js';

const outcomes = { 0: 'success', 4: 'minor failure', 8: 'serious failure', 12: 'major failure' };

export async function render(ctx) {
  ctx.setTitle('Audit');
  const p = ctx.params;
  const input = (name, attrs = {}) => h('input', { name, value: p.get(name) ?? '', autocomplete: 'off', ...attrs });
  const form = h('form', { class: 'search', role: 'search', 'aria-label': 'Search the audit trail' },
    field('Patient ID', input('patient', { type: 'search' })),
    field('Study Instance UID', input('study', { type: 'search' })),
    field('User or AE title', input('user', { type: 'search' })),
    field('Since', input('since', { type: 'datetime-local' })),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Search')));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) q.set(k, String(v));
    ctx.navigate(`#/audit${q.size ? `?${q}` : ''}`);
  });
  const results = h('section', { 'aria-label': 'Audit records' });
  replace(ctx.main, h('h1', {}, 'Audit'), form, results);
  const params = {};
  for (const k of ['patient', 'study', 'user']) if (p.get(k)) params[k] = p.get(k);
  if (p.get('since')) params.since = new Date(p.get('since')).toISOString();
  await page(ctx, results, { ...params, limit: 100 });
}

async function page(ctx, results, params) {
  let r;
  try {
    r = await api.getJSON(`/api/audit${api.query(params)}`, { optional: true, signal: ctx.signal });
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    replace(results, err instanceof api.NotAvailableError ? unavailable('The audit trail', 'GET /api/audit') : notice('error', 'The audit trail could not be read', err.message));
    results.dataset.state = 'loaded';
    return;
  }
  const records = r?.records ?? [];
  if (!records.length) {
    replace(results, h('p', {}, 'No audit records match.'));
    results.dataset.state = 'loaded';
    return;
  }
  replace(results, h('table', { class: 'list' },
    h('caption', { class: 'visually-hidden' }, 'Audit records, newest first'),
    h('thead', {}, h('tr', {}, ['Time', 'Event', 'Outcome', 'User', 'From', 'Patient', 'Study', 'Detail'].map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, records.map((a) => h('tr', {},
      h('td', {}, formatTime(a.time)),
      h('td', {}, a.event),
      h('td', { class: a.outcome ? 'state-failed' : '' }, outcomes[a.outcome] ?? String(a.outcome ?? '')),
      h('td', {}, a.user ?? ''),
      h('td', {}, [a.source?.ae, a.source?.address].filter(Boolean).join(' @ ')),
      h('td', {}, a.patient ?? ''),
      h('td', {}, a.study ? h('a', { href: `#/study/${encodeURIComponent(a.study)}` }, h('code', {}, a.study)) : ''),
      h('td', {}, a.detail ?? ''))))),
  r.next ? h('button', { type: 'button', class: 'secondary', onclick: () => page(ctx, results, { ...params, before: r.next }) }, 'Older records') : null);
  results.dataset.state = 'loaded';
}
