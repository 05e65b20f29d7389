// Migrations: each migration's progress (studies done of total, rate,
// ETA) and its failures with their reasons, refreshed live (GET
// /api/migrations, docs/api.md).

import * as api from '../api.js';
import { date, personName } from '../dicom.js';
import { formatBytes, formatDuration, formatNumber, formatTime, h, notice, replace } from '../dom.js';
import { every, keepFocus, load, updated } from './live.js';

const states = ['pending', 'done', 'verified', 'failed', 'conflict'];

export async function render(ctx) {
  const body = h('div', {});
  replace(ctx.main, h('h1', {}, 'Migrations'), body);
  ctx.setTitle('Migrations');
  await every(5000, ctx.signal, async () => {
    const m = await load(ctx, body, '/api/migrations', 'Migration status');
    const list = m?.migrations ?? [];
    const problems = await Promise.all(list.map(async (mg) => {
      if (!(mg.studies?.failed || mg.studies?.conflict)) return [mg.id, []];
      try {
        const r = await api.getJSON(`/api/migrations/${encodeURIComponent(mg.id)}/studies?state=failed,conflict&limit=100`, { optional: true, signal: ctx.signal });
        return [mg.id, r?.studies ?? []];
      } catch {
        return [mg.id, []];
      }
    }));
    keepFocus(body, () => draw(list, new Map(problems)));
    body.dataset.state = 'loaded';
  });
}

function draw(list, problems) {
  if (!list.length) return [notice('info', 'No migration has run on this archive.', 'Start one with pacsd migrate --from SOURCE.'), updated()];
  return [...list.map((mg) => {
    const s = mg.studies ?? {};
    const total = s.total ?? states.reduce((n, k) => n + (s[k] ?? 0), 0);
    const finished = (s.done ?? 0) + (s.verified ?? 0);
    const failures = problems.get(mg.id) ?? [];
    return h('section', { class: 'card', 'aria-labelledby': `mg-${mg.id}`, dataset: { migration: mg.id } },
      h('h2', { id: `mg-${mg.id}` }, `From ${mg.source}`, h('span', { class: 'muted' }, ` · ${mg.state}`)),
      h('label', { for: `mg-p-${mg.id}` }, `${formatNumber(finished)} of ${formatNumber(total)} studies`),
      h('progress', { id: `mg-p-${mg.id}`, max: total || 1, value: finished }),
      h('dl', { class: 'facts' },
        states.flatMap((k) => [h('dt', {}, k), h('dd', { class: k === 'failed' || k === 'conflict' ? (s[k] ? 'state-failed' : '') : '' }, formatNumber(s[k] ?? 0))]),
        h('dt', {}, 'instances'), h('dd', {}, formatNumber(mg.instances)),
        h('dt', {}, 'data'), h('dd', {}, formatBytes(mg.bytes)),
        h('dt', {}, 'rate'), h('dd', {}, mg.bytes_per_second ? `${formatBytes(mg.bytes_per_second)}/s, ${formatNumber(Math.round(mg.studies_per_hour ?? 0))} studies/h` : '—'),
        h('dt', {}, 'ETA'), h('dd', {}, mg.state === 'running' ? formatDuration(mg.eta_seconds) : '—'),
        h('dt', {}, 'started'), h('dd', {}, formatTime(mg.started)),
        h('dt', {}, 'last activity'), h('dd', {}, formatTime(mg.updated))),
      failures.length ? h('details', { open: true }, h('summary', {}, `${failures.length} ${failures.length === 1 ? 'study' : 'studies'} failed or in conflict`),
        h('table', { class: 'list' },
          h('thead', {}, h('tr', {}, ['Study', 'Patient', 'Date', 'At source', 'Here', 'State', 'Attempts', 'Reason'].map((c) => h('th', { scope: 'col' }, c)))),
          h('tbody', {}, failures.map((f) => h('tr', {},
            h('td', {}, h('code', {}, f.study)),
            h('td', {}, [f.patient_id, personName(f.patient_name ?? '')].filter(Boolean).join(' · ')),
            h('td', {}, date(f.study_date ?? '')),
            h('td', { class: 'num' }, formatNumber(f.instances_source)),
            h('td', { class: 'num' }, formatNumber(f.instances_here)),
            h('td', { class: 'state-failed' }, f.state),
            h('td', { class: 'num' }, formatNumber(f.attempts)),
            h('td', {}, f.last_error ?? '')))))) : null);
  }), updated()];
}
