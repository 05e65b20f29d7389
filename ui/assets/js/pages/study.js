// A study: who and what it is, its series with thumbnails, the quick
// viewer, every attribute the index keeps, and the actions the
// principal's scopes allow (send, download, correct, delete).

import * as api from '../api.js';
import { date, display, keywordOf, personName, tags, time, value, values, number } from '../dicom.js';
import { announce, field, h, id, notice, replace } from '../dom.js';
import { createViewer } from '../viewer.js';

export async function render(ctx) {
  const uid = ctx.rest[0];
  const wanted = ctx.rest[1] === 'series' ? ctx.rest[2] : '';
  const { signal } = ctx;
  replace(ctx.main, h('p', { class: 'loading' }, 'Loading the study…'));
  const enc = encodeURIComponent(uid);
  const [studies, series] = await Promise.all([
    api.qido('/studies', { StudyInstanceUID: uid, includefield: 'all' }, signal),
    api.qido(`/studies/${enc}/series`, { includefield: 'all' }, signal),
  ]);
  if (!studies.length) {
    replace(ctx.main, h('h1', {}, 'Study not found'), notice('unavailable', 'No such study', `This archive holds no study ${uid}, or you may not see it.`),
      h('p', {}, h('a', { href: '#/studies' }, 'Back to the studies')));
    return;
  }
  const st = studies[0];
  const name = personName(value(st, 'PatientName')) || '(no name)';
  ctx.setTitle(`${name}, ${date(value(st, 'StudyDate'))}`);

  series.sort((a, b) => (number(a, 'SeriesNumber') ?? 1e9) - (number(b, 'SeriesNumber') ?? 1e9));
  const messages = h('div', { class: 'messages' });
  const viewer = createViewer(signal);
  const list = h('ul', { class: 'series', 'aria-label': 'Series' });

  const head = h('div', { class: 'study-head' },
    h('div', {},
      h('h1', {}, name),
      h('dl', { class: 'facts' },
        fact('Patient ID', [value(st, 'PatientID'), value(st, 'IssuerOfPatientID')].filter(Boolean).join(' · ')),
        fact('Born', date(value(st, 'PatientBirthDate'))),
        fact('Sex', value(st, 'PatientSex')),
        fact('Study date', `${date(value(st, 'StudyDate'))} ${time(value(st, 'StudyTime'))}`.trim()),
        fact('Description', value(st, 'StudyDescription')),
        fact('Accession', value(st, 'AccessionNumber')),
        fact('Referring', personName(value(st, 'ReferringPhysicianName'))),
        fact('Modalities', values(st, 'ModalitiesInStudy').join(', ')),
        fact('Series, images', `${value(st, 'NumberOfStudyRelatedSeries')}, ${value(st, 'NumberOfStudyRelatedInstances')}`),
        fact('Study UID', h('span', { class: 'uid' }, uid)))),
    actions(ctx, st, uid, messages));

  replace(ctx.main,
    h('p', {}, h('a', { href: sessionStorage.getItem('pacsd.lastSearch') || '#/studies' }, '← Studies')),
    head, messages,
    h('div', { class: 'study-body' }, h('div', {}, h('h2', {}, 'Series'), list), h('div', {}, h('h2', { class: 'visually-hidden' }, 'Viewer'), viewer.element)),
    attributes(st));

  const buttons = [];
  const select = async (ds, button, focus) => {
    for (const b of buttons) b.setAttribute('aria-pressed', b === button ? 'true' : 'false');
    const suid = value(ds, 'SeriesInstanceUID');
    history.replaceState(null, '', `#/study/${enc}/series/${encodeURIComponent(suid)}`);
    const instances = await api.qido(`/studies/${enc}/series/${encodeURIComponent(suid)}/instances`, { includefield: 'PhotometricInterpretation' }, signal);
    const label = `${value(ds, 'Modality')} series ${value(ds, 'SeriesNumber')} ${value(ds, 'SeriesDescription')}`.trim();
    await viewer.load(uid, suid, instances, value(ds, 'Modality'), label);
    if (focus) viewer.element.querySelector('.stage').focus();
  };
  for (const ds of series) {
    const suid = value(ds, 'SeriesInstanceUID');
    const thumb = h('div', { class: 'blank' });
    const b = h('button', { type: 'button', 'aria-pressed': 'false', dataset: { series: suid } },
      thumb,
      h('span', { class: 'meta' },
        h('strong', {}, `${value(ds, 'Modality')} ${value(ds, 'SeriesNumber')}`.trim() || 'Series'),
        h('span', {}, value(ds, 'SeriesDescription') || '(no description)'),
        h('span', { class: 'muted' }, ` · ${value(ds, 'NumberOfSeriesRelatedInstances') || 0} images`)));
    b.addEventListener('click', () => select(ds, b, true).catch((err) => showError(messages, err)));
    buttons.push(b);
    list.append(h('li', {}, b));
    api.imageURL(api.dicomweb(`/studies/${enc}/series/${encodeURIComponent(suid)}/thumbnail`), signal)
      .then((url) => {
        signal.addEventListener('abort', () => URL.revokeObjectURL(url));
        thumb.replaceWith(h('img', { src: url, alt: '' }));
      })
      .catch(() => {});
  }
  if (series.length) {
    let i = series.findIndex((ds) => value(ds, 'SeriesInstanceUID') === wanted);
    if (i < 0) i = 0;
    await select(series[i], buttons[i], false).catch((err) => showError(messages, err));
  }
}

function showError(where, err) {
  if (err.name === 'AbortError') return;
  replace(where, notice('error', 'Something failed', err.message));
}

function fact(label, v) {
  return [h('dt', {}, label), h('dd', {}, v || '—')];
}

function attributes(st) {
  const rows = Object.keys(st).sort().map((tag) => h('tr', {},
    h('td', {}, h('code', {}, tag)), h('td', {}, keywordOf(tag) === tag ? '' : keywordOf(tag)), h('td', {}, display(st[tag]))));
  return h('details', { class: 'attrs' }, h('summary', {}, 'All patient and study attributes'),
    h('table', { class: 'list' }, h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Tag'), h('th', { scope: 'col' }, 'Keyword'), h('th', { scope: 'col' }, 'Value'))), h('tbody', {}, rows)));
}

// actions are the buttons of the study that the principal may use.
function actions(ctx, st, uid, messages) {
  const { config, can } = ctx;
  const enc = encodeURIComponent(uid);
  const bar = h('div', { class: 'actions-bar', role: 'group', 'aria-label': 'Study actions' });
  if (config.ohif_url) {
    const url = `${config.ohif_url.replace(/\/$/, '')}/viewer?StudyInstanceUIDs=${enc}`;
    bar.append(h('a', { class: 'button secondary', href: url, target: '_blank', rel: 'noopener noreferrer' }, 'Open in OHIF'));
  }
  if (can('read')) bar.append(h('button', { type: 'button', class: 'secondary', onclick: () => download(ctx, uid, messages) }, 'Download ZIP'));
  if (can('write')) {
    bar.append(h('button', { type: 'button', class: 'secondary', onclick: () => sendDialog(ctx, uid, messages) }, 'Send…'));
    bar.append(h('button', { type: 'button', class: 'secondary', onclick: () => correctDialog(ctx, st, uid, messages) }, 'Correct…'));
  }
  if (can('delete')) bar.append(h('button', { type: 'button', class: 'danger', onclick: () => deleteDialog(ctx, uid, messages) }, 'Delete…'));
  return bar;
}

// download saves the study as a ZIP of Part-10 files, streamed by the
// server (GET /api/studies/{study}/archive.zip). Without sign-in the
// browser downloads the URL itself; with it, a one-time ticket lets it do
// the same, since a plain download cannot carry the access token.
async function download(ctx, uid, messages) {
  const path = `/api/studies/${encodeURIComponent(uid)}/archive.zip`;
  try {
    // A HEAD tells whether the server offers archives before the
    // browser is sent to a page that would not be one.
    await api.request(path, { method: 'HEAD', accept: 'application/zip', optional: true });
    let url = path;
    if (ctx.config.auth.modes.some((m) => m !== 'none')) {
      try {
        const t = await api.sendJSON('POST', `/api/studies/${encodeURIComponent(uid)}/archive-ticket`, {}, { optional: true });
        url = t.url;
      } catch (err) {
        if (!(err instanceof api.NotAvailableError)) throw err;
        // Without tickets the archive comes through the page, which
        // holds it in memory until it is saved.
        replace(messages, notice('info', 'Preparing the download…'));
        const resp = await api.request(path, { accept: 'application/zip' });
        url = URL.createObjectURL(await resp.blob());
        setTimeout(() => URL.revokeObjectURL(url), 60000);
        replace(messages);
      }
    }
    const a = h('a', { href: url, download: `${uid}.zip`, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    announce('Download started');
  } catch (err) {
    replace(messages, err instanceof api.NotAvailableError
      ? notice('unavailable', 'Downloading is not available on this server', 'It needs GET /api/studies/{study}/archive.zip (docs/api.md).')
      : notice('error', 'The download failed', err.message));
  }
}

// dialog opens a modal dialog built by body(form), whose submit calls
// submit(form); the dialog is removed when it closes.
function dialog(title, body, submitLabel, submit, danger = false) {
  const hid = id('dlg');
  const status = h('div', { class: 'dialog-status' });
  const form = h('form', { method: 'dialog' });
  const ok = h('button', { type: 'submit', class: danger ? 'danger' : null }, submitLabel);
  const cancel = h('button', { type: 'button', class: 'secondary', onclick: () => dlg.close() }, 'Cancel');
  const dlg = h('dialog', { 'aria-labelledby': hid }, h('h2', { id: hid }, title), form);
  form.append(...[body(form)].flat(), status, h('div', { class: 'buttons' }, cancel, ok));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    ok.disabled = true;
    replace(status);
    try {
      if ((await submit(form, status)) !== false) dlg.close();
    } catch (err) {
      replace(status, err instanceof api.NotAvailableError ? notice('unavailable', 'Not available on this server', err.message) : notice('error', 'It failed', err.message));
    } finally {
      ok.disabled = false;
    }
  });
  dlg.addEventListener('close', () => dlg.remove());
  document.body.append(dlg);
  dlg.showModal();
  return dlg;
}

async function sendDialog(ctx, uid, messages) {
  let destinations = null;
  let unavailable = false;
  try {
    const q = await api.getJSON('/api/queue', { optional: true, signal: ctx.signal });
    destinations = (q?.destinations ?? []).map((d) => d.name);
  } catch (err) {
    unavailable = err instanceof api.NotAvailableError;
    if (!unavailable) throw err;
  }
  dialog('Send the study', () => {
    if (unavailable) return notice('unavailable', 'Sending is not available on this server', 'It needs GET /api/queue and POST /api/studies/{study}/send (docs/api.md).');
    if (!destinations.length) return notice('info', 'No destinations are configured', 'Add remote AEs or DICOMweb destinations to the configuration.');
    return h('fieldset', {}, h('legend', {}, 'Destinations'),
      destinations.map((d) => {
        const cb = h('input', { type: 'checkbox', name: 'to', value: d, id: id('dest') });
        return h('div', {}, cb, ' ', h('label', { for: cb.id }, d));
      }));
  }, 'Send', async (form) => {
    if (unavailable) return true;
    const to = new FormData(form).getAll('to');
    if (!to.length) throw new Error('Choose at least one destination.');
    await api.sendJSON('POST', `/api/studies/${encodeURIComponent(uid)}/send`, { to }, { optional: true });
    replace(messages, notice('ok', `Queued for ${to.join(', ')}.`, h('a', { href: '#/queue' }, 'Watch the queue')));
    announce(`Study queued for ${to.join(', ')}`);
    return true;
  });
}

// The attributes a correction may change (issue: corrections).
const correctable = [
  ['PatientName', 'PN', 'Patient name'],
  ['PatientID', 'LO', 'Patient ID'],
  ['IssuerOfPatientID', 'LO', 'Issuer of Patient ID'],
  ['PatientBirthDate', 'DA', 'Birth date (YYYYMMDD)'],
  ['PatientSex', 'CS', 'Sex (M, F, O)'],
  ['AccessionNumber', 'SH', 'Accession number'],
  ['StudyDescription', 'LO', 'Study description'],
  ['ReferringPhysicianName', 'PN', 'Referring physician'],
];

function correctDialog(ctx, st, uid, messages) {
  const inputs = {};
  dialog('Correct the study', () => [
    h('p', { class: 'muted' }, 'The stored objects are not changed: corrected values are served from now on, with the old ones kept in Original Attributes Sequence, and the correction can be undone.'),
    h('div', { class: 'grid2' }, correctable.map(([kw, , label]) => {
      inputs[kw] = h('input', { name: kw, value: value(st, kw), autocomplete: 'off' });
      return field(label, inputs[kw]);
    })),
    field('Reason (required)', h('textarea', { name: 'reason', required: true, rows: 2 })),
  ], 'Save correction', async (form) => {
    const data = new FormData(form);
    const body = {};
    for (const [kw, vr] of correctable) {
      const v = String(data.get(kw) ?? '').trim();
      if (v === value(st, kw)) continue;
      body[tags[kw]] = { vr, Value: v === '' ? undefined : [vr === 'PN' ? { Alphabetic: v } : v] };
    }
    if (!Object.keys(body).length) throw new Error('Nothing was changed.');
    const reason = String(data.get('reason') ?? '').trim();
    await api.sendJSON('POST', `/api/studies/${encodeURIComponent(uid)}/update${api.query({ reason })}`, body, { optional: true });
    replace(messages, notice('ok', 'The correction is saved.'));
    ctx.navigate(`#/study/${encodeURIComponent(uid)}`);
    return true;
  });
}

function deleteDialog(ctx, uid, messages) {
  dialog('Delete the study', () => [
    h('p', {}, 'The study is hidden from every query and retrieval at once and moved to the trash, from which it can be restored until the trash is purged.'),
    field('Reason (required)', h('textarea', { name: 'reason', required: true, rows: 2 })),
  ], 'Delete', async (form) => {
    const reason = String(new FormData(form).get('reason') ?? '').trim();
    await api.request(api.dicomweb(`/studies/${encodeURIComponent(uid)}${api.query({ reason })}`), { method: 'DELETE', optional: true });
    replace(messages, notice('ok', 'The study is in the trash.',
      h('button', { type: 'button', class: 'secondary', onclick: () => restore(uid, messages) }, 'Restore it')));
    announce('Study deleted');
    return true;
  }, true);
}

async function restore(uid, messages) {
  try {
    await api.sendJSON('POST', `/api/studies/${encodeURIComponent(uid)}/restore`, {}, { optional: true });
    replace(messages, notice('ok', 'The study is restored.'));
  } catch (err) {
    replace(messages, err instanceof api.NotAvailableError
      ? notice('unavailable', 'Restoring is not available here', `Restore it on the server: pacsd restore --study ${uid}`)
      : notice('error', 'Restoring failed', err.message));
  }
}
