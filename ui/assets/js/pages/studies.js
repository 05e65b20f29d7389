// The study list: a search form over QIDO-RS and a sortable, paged table
// of the matching studies. The search lives in the address (#/studies?…),
// so that Back, a bookmark or a link brings the same list again.

import * as api from '../api.js';
import { date, isNHSNumber, number, personName, toDA, value, values } from '../dicom.js';
import { announce, field, h, notice, replace } from '../dom.js';

const pageSizes = [25, 50, 100];
const modalities = ['CT', 'MR', 'CR', 'DX', 'MG', 'US', 'NM', 'PT', 'XA', 'RF', 'OT', 'SR', 'SC', 'ECG', 'IO', 'PX', 'OP', 'SM'];
const presets = [
  ['', 'Any date'],
  ['today', 'Today'],
  ['yesterday', 'Yesterday'],
  ['7d', 'Last 7 days'],
  ['30d', 'Last 30 days'],
  ['12m', 'Last 12 months'],
  ['custom', 'Between…'],
];

// Columns of the table: the label, the QIDO keyword that sorts it (for
// orderby), and how to read the sort value of a match.
const columns = [
  { key: 'PatientName', label: 'Patient', sort: (ds) => personName(value(ds, 'PatientName')).toLowerCase() },
  { key: 'PatientID', label: 'Patient ID', sort: (ds) => value(ds, 'PatientID') },
  { key: 'PatientBirthDate', label: 'Born', sort: (ds) => value(ds, 'PatientBirthDate') },
  { key: 'StudyDate', label: 'Study date', sort: (ds) => value(ds, 'StudyDate') + value(ds, 'StudyTime') },
  { key: 'ModalitiesInStudy', label: 'Modalities', sort: (ds) => values(ds, 'ModalitiesInStudy').join('/') },
  { key: 'StudyDescription', label: 'Description', sort: (ds) => value(ds, 'StudyDescription').toLowerCase() },
  { key: 'AccessionNumber', label: 'Accession', sort: (ds) => value(ds, 'AccessionNumber') },
  { key: 'NumberOfStudyRelatedSeries', label: 'Series', num: true, sort: (ds) => number(ds, 'NumberOfStudyRelatedSeries') ?? -1 },
  { key: 'NumberOfStudyRelatedInstances', label: 'Images', num: true, sort: (ds) => number(ds, 'NumberOfStudyRelatedInstances') ?? -1 },
];

// The fields of the search, as they appear in the address.
const fields = ['name', 'id', 'accession', 'date', 'from', 'to', 'modality', 'referring', 'source'];

function readState(params) {
  const s = {};
  for (const f of fields) s[f] = params.get(f) ?? '';
  const limit = Number(params.get('limit'));
  s.limit = limit > 0 ? Math.min(Math.floor(limit), 500) : 25;
  s.offset = Math.max(0, Number(params.get('offset')) || 0);
  s.sort = params.get('sort') ?? '';
  return s;
}

function hashOf(s) {
  const q = new URLSearchParams();
  for (const f of fields) if (s[f]) q.set(f, s[f]);
  if (s.limit !== 25) q.set('limit', s.limit);
  if (s.offset) q.set('offset', s.offset);
  if (s.sort) q.set('sort', s.sort);
  const str = q.toString();
  return `#/studies${str ? `?${str}` : ''}`;
}

// dateRange turns a preset into a DA range for StudyDate.
export function dateRange(s, today = new Date()) {
  const day = (n) => {
    const d = new Date(today);
    d.setDate(d.getDate() - n);
    return toDA(d);
  };
  switch (s.date) {
    case 'today': return toDA(today);
    case 'yesterday': return day(1);
    case '7d': return `${day(6)}-${toDA(today)}`;
    case '30d': return `${day(29)}-${toDA(today)}`;
    case '12m': {
      const d = new Date(today);
      d.setFullYear(d.getFullYear() - 1);
      d.setDate(d.getDate() + 1);
      return `${toDA(d)}-${toDA(today)}`;
    }
    case 'custom': {
      const from = s.from.replaceAll('-', '');
      const to = s.to.replaceAll('-', '');
      if (!from && !to) return '';
      return from === to ? from : `${from}-${to}`;
    }
    default: return '';
  }
}

// wildcard makes a prefix search of a name, as staff type the start of
// a name; a value with its own wild cards is left as it is.
function wildcard(v) {
  v = v.trim();
  if (!v || /[*?]/.test(v)) return v;
  return `${v}*`;
}

// qidoParams turns the search into QIDO-RS parameters.
export function qidoParams(s, config) {
  const p = {};
  if (s.name) p.PatientName = wildcard(s.name.replace(/,\s*/, '^'));
  if (s.id) {
    const id = s.id.trim();
    const digits = id.replace(/[\s-]/g, '');
    if (isNHSNumber(digits)) {
      p.PatientID = digits;
      if (config.nhs_issuer) p.IssuerOfPatientID = config.nhs_issuer;
    } else {
      p.PatientID = id;
    }
  }
  if (s.accession) p.AccessionNumber = s.accession.trim();
  const range = dateRange(s);
  if (range) p.StudyDate = range;
  if (s.modality) p.ModalitiesInStudy = s.modality;
  if (s.referring) p.ReferringPhysicianName = wildcard(s.referring);
  if (s.source && config.features.qido_source_ae) p.SourceApplicationEntityTitle = s.source.trim();
  // One more than a page, to know whether there is a next page without
  // counting the whole result.
  p.limit = s.limit + 1;
  if (s.offset) p.offset = s.offset;
  if (s.sort && config.features.qido_orderby) p.orderby = s.sort;
  return p;
}

export async function render(ctx) {
  const { config } = ctx;
  const state = readState(ctx.params);
  ctx.setTitle('Studies');
  sessionStorage.setItem('pacsd.lastSearch', hashOf(state));

  const input = (name, attrs = {}) => h('input', { name, value: state[name], autocomplete: 'off', ...attrs });
  const dateSelect = h('select', { name: 'date' }, presets.map(([v, label]) => h('option', { value: v, selected: state.date === v }, label)));
  const from = input('from', { type: 'date' });
  const to = input('to', { type: 'date' });
  const custom = h('div', { class: 'dates', hidden: state.date !== 'custom' }, field('From', from), field('To', to));
  dateSelect.addEventListener('change', () => {
    custom.hidden = dateSelect.value !== 'custom';
  });
  const sourceInput = input('source', { disabled: !config.features.qido_source_ae });
  const form = h('form', { class: 'search', role: 'search', 'aria-label': 'Find studies' },
    field('Patient name', input('name', { type: 'search' }), 'Family name first; * and ? are wild cards'),
    field('Patient ID or NHS number', input('id', { type: 'search' })),
    field('Accession number', input('accession', { type: 'search' })),
    field('Referring physician', input('referring', { type: 'search' })),
    h('div', {}, field('Study date', dateSelect), custom),
    field('Modality', h('select', { name: 'modality' },
      h('option', { value: '' }, 'Any'),
      modalities.map((m) => h('option', { value: m, selected: state.modality === m }, m)))),
    field('Source AE', sourceInput, config.features.qido_source_ae ? 'The calling AE title that sent the study' : 'This server does not search by source AE'),
    h('div', { class: 'actions' },
      h('button', { type: 'submit' }, 'Search'),
      h('button', { type: 'button', class: 'secondary', onclick: () => ctx.navigate('#/studies') }, 'Clear')));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const data = new FormData(form);
    const next = { ...state, offset: 0 };
    for (const f of fields) next[f] = String(data.get(f) ?? '').trim();
    performance.mark('pacsd:search');
    ctx.navigate(hashOf(next));
  });

  const results = h('section', { class: 'results', 'aria-labelledby': 'results-heading' });
  const live = h('div', { class: 'live' });
  replace(ctx.main, h('h1', { id: 'studies-heading' }, 'Studies'), form, live, results);

  await search(ctx, state, results);
  watchChanges(ctx, live, () => search(ctx, state, results));
}

async function search(ctx, state, results) {
  const { config, signal } = ctx;
  replace(results, h('h2', { id: 'results-heading', class: 'visually-hidden' }, 'Results'), h('p', { class: 'loading' }, 'Searching…'));
  let matches;
  try {
    matches = await api.qido('/studies', qidoParams(state, config), signal);
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    replace(results, notice('error', 'The search failed', err.message));
    return;
  }
  const more = matches.length > state.limit;
  let rows = matches.slice(0, state.limit);
  const serverSorted = Boolean(state.sort && config.features.qido_orderby);
  if (state.sort && !serverSorted) rows = sortRows(rows, state.sort);

  const heading = h('h2', { id: 'results-heading' }, rows.length === 0 ? 'No studies found' : `Studies ${state.offset + 1}–${state.offset + rows.length}${more ? '' : ' (last page)'}`);
  if (rows.length === 0) {
    replace(results, heading, h('p', {}, state.offset ? 'There are no more studies for this search.' : 'Nothing matches this search. Names match from their start; use * for any characters.'));
    announce('No studies found');
    results.dataset.state = 'loaded';
    return;
  }

  const table = h('table', { class: 'list studies' },
    h('caption', { class: 'visually-hidden' }, `Studies, ${serverSorted || state.sort ? 'sorted by the selected column' : 'in the order the archive received them'}`),
    h('thead', {}, h('tr', {},
      h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Image')),
      columns.map((c) => sortHeader(ctx, state, c)))),
    h('tbody', {}, rows.map((ds) => row(ds))));

  const pager = h('div', { class: 'pager' },
    h('button', { type: 'button', class: 'secondary', disabled: state.offset === 0, onclick: () => ctx.navigate(hashOf({ ...state, offset: Math.max(0, state.offset - state.limit) })) }, 'Previous page'),
    h('button', { type: 'button', class: 'secondary', disabled: !more, onclick: () => ctx.navigate(hashOf({ ...state, offset: state.offset + state.limit })) }, 'Next page'),
    field('Per page', h('select', {
      onchange: (e) => ctx.navigate(hashOf({ ...state, limit: Number(e.target.value), offset: 0 })),
    }, [...new Set([...pageSizes, state.limit])].sort((a, b) => a - b).map((n) => h('option', { value: n, selected: n === state.limit }, n)))),
    state.sort && !serverSorted ? h('span', { class: 'count' }, 'Sorted within this page: this server sorts the whole list only in the order it received the studies.') : null);

  replace(results, heading, table, pager);
  results.dataset.state = 'loaded';
  performance.mark('pacsd:results');
  announce(`${rows.length} studies shown`);
  loadThumbnails(ctx, table);
}

function sortHeader(ctx, state, c) {
  const dir = state.sort === c.key ? 'ascending' : state.sort === `-${c.key}` ? 'descending' : null;
  const next = dir === 'ascending' ? `-${c.key}` : c.key;
  return h('th', { scope: 'col', class: c.num ? 'num' : null, 'aria-sort': dir },
    h('button', { type: 'button', onclick: () => ctx.navigate(hashOf({ ...state, sort: next, offset: ctx.config.features.qido_orderby ? 0 : state.offset })) }, c.label));
}

function sortRows(rows, sort) {
  const desc = sort.startsWith('-');
  const col = columns.find((c) => c.key === sort.replace(/^-/, ''));
  if (!col) return rows;
  return [...rows].sort((a, b) => {
    const x = col.sort(a);
    const y = col.sort(b);
    const r = typeof x === 'number' ? x - y : String(x).localeCompare(String(y));
    return desc ? -r : r;
  });
}

function row(ds) {
  const uid = value(ds, 'StudyInstanceUID');
  const name = personName(value(ds, 'PatientName')) || '(no name)';
  return h('tr', { dataset: { study: uid } },
    h('td', { class: 'thumb' }, h('div', { class: 'blank', role: 'presentation' })),
    h('td', {}, h('a', { href: `#/study/${encodeURIComponent(uid)}` }, name)),
    h('td', {}, value(ds, 'PatientID')),
    h('td', {}, date(value(ds, 'PatientBirthDate'))),
    h('td', {}, date(value(ds, 'StudyDate'))),
    h('td', {}, values(ds, 'ModalitiesInStudy').join(', ')),
    h('td', {}, value(ds, 'StudyDescription')),
    h('td', {}, value(ds, 'AccessionNumber')),
    h('td', { class: 'num' }, value(ds, 'NumberOfStudyRelatedSeries')),
    h('td', { class: 'num' }, value(ds, 'NumberOfStudyRelatedInstances')));
}

const thumbnails = api.limiter(4);

// loadThumbnails fetches each row's thumbnail once the row is on screen,
// four at a time, after the table is drawn: the list never waits for
// images.
function loadThumbnails(ctx, table) {
  const urls = [];
  ctx.signal.addEventListener('abort', () => urls.forEach((u) => URL.revokeObjectURL(u)));
  const io = new IntersectionObserver((entries) => {
    for (const e of entries) {
      if (!e.isIntersecting) continue;
      io.unobserve(e.target);
      const uid = e.target.dataset.study;
      thumbnails(() => (ctx.signal.aborted ? Promise.resolve(null) : api.imageURL(api.dicomweb(`/studies/${encodeURIComponent(uid)}/thumbnail`), ctx.signal)))
        .then((url) => {
          if (!url) return;
          urls.push(url);
          const cell = e.target.querySelector('td.thumb');
          replace(cell, h('img', { src: url, alt: '', width: 48, height: 48 }));
        })
        .catch(() => {
          // A study without a renderable image keeps its blank square.
        });
    }
  });
  for (const tr of table.tBodies[0].rows) io.observe(tr);
  ctx.signal.addEventListener('abort', () => io.disconnect());
}

// watchChanges follows the change feed (GET /api/changes, long-polled)
// while the list is shown, and offers to refresh it when studies
// arrive. A server without the feed is simply not followed.
async function watchChanges(ctx, live, refresh) {
  const { signal } = ctx;
  let after;
  try {
    const head = await api.getJSON('/api/changes?limit=0', { optional: true, signal });
    after = head?.last_seq ?? 0;
  } catch {
    return;
  }
  let count = 0;
  while (!signal.aborted) {
    try {
      const r = await api.getJSON(`/api/changes?after=${after}&limit=500&wait=30s`, { optional: true, signal });
      const changes = r?.changes ?? [];
      if (changes.length) {
        after = changes[changes.length - 1].seq;
        count += changes.length;
        replace(live, notice('info', `${count} instance${count === 1 ? '' : 's'} stored, changed or deleted since this list was loaded.`,
          h('button', { type: 'button', class: 'secondary', onclick: () => { count = 0; replace(live); refresh(); } }, 'Refresh the list')));
      }
    } catch (err) {
      if (signal.aborted || err instanceof api.NotAvailableError) return;
      await new Promise((r) => setTimeout(r, 10000));
    }
  }
}
