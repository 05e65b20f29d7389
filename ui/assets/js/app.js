// app.js starts the page: it reads the server's configuration (GET
// /api/ui-config), signs in when the server asks for it, and shows the
// page the address's hash names (#/studies, #/study/UID, #/queue…).

import * as api from './api.js';
import * as auth from './auth.js';
import { h, replace, notice } from './dom.js';

const pages = {
  studies: { title: 'Studies', load: () => import('./pages/studies.js'), scope: 'read' },
  study: { title: 'Study', load: () => import('./pages/study.js'), scope: 'read', nav: 'studies' },
  queue: { title: 'Queue', load: () => import('./pages/queue.js'), scope: 'read' },
  migrations: { title: 'Migrations', load: () => import('./pages/migrations.js'), scope: 'read' },
  audit: { title: 'Audit', load: () => import('./pages/audit.js'), scope: 'admin' },
  system: { title: 'System', load: () => import('./pages/system.js'), scope: 'read' },
};

const defaults = {
  version: '',
  dicomweb_root: '/dicom-web',
  ohif_url: '',
  auth: { modes: ['none'], oidc: null },
  principal: { name: 'anonymous', scopes: ['read', 'write', 'delete', 'admin'], issuers: [] },
  nhs_issuer: '',
  features: { qido_orderby: false, qido_source_ae: false },
};

let config = defaults;
let current = null; // {controller, name}
let first = true;
let sessionEnded = false; // the sign-in ran out: the sign-in panel says so

async function loadConfig() {
  try {
    const c = await api.getJSON('/api/ui-config', { optional: true });
    config = { ...defaults, ...c, auth: { ...defaults.auth, ...c.auth }, features: { ...defaults.features, ...c.features } };
  } catch (err) {
    if (!(err instanceof api.NotAvailableError)) throw err;
    config = defaults; // a server without the page's configuration: everything on, nothing to sign in to
  }
  api.configure({ root: config.dicomweb_root });
}

function authRequired() {
  return !config.auth.modes.includes('none');
}

// can reports whether the principal holds scope; admin implies read,
// write and delete, as the server has it.
function can(scope) {
  const scopes = config.principal?.scopes ?? [];
  return scopes.includes(scope) || (scopes.includes('admin') && ['read', 'write', 'delete'].includes(scope));
}

function renderAccount() {
  const el = document.getElementById('account');
  if (!authRequired()) {
    replace(el);
    return;
  }
  if (!config.principal) {
    replace(el, config.auth.oidc ? h('button', { type: 'button', onclick: () => auth.signIn().catch(showError) }, 'Sign in') : null);
    return;
  }
  const issuers = config.principal.issuers?.length ? ` · ${config.principal.issuers.join(', ')}` : '';
  replace(el,
    h('span', { class: 'who' }, `${auth.name() ?? config.principal.name}${issuers}`),
    h('button', { type: 'button', class: 'secondary', onclick: () => auth.signOut().then(start) }, 'Sign out'));
}

function renderNav(active) {
  for (const a of document.querySelectorAll('nav.main a')) {
    const name = a.dataset.page;
    a.hidden = !can(pages[name].scope);
    if (name === active) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

function showError(err) {
  const main = document.getElementById('main');
  replace(main, notice('error', 'Something went wrong', String(err?.message ?? err)));
}

// signInPanel is what a visitor without credentials sees.
function signInPanel(main) {
  const parts = [h('h1', {}, 'Sign in')];
  if (sessionEnded) parts.push(notice('info', 'Your sign-in has ended', 'It ran out and could not be renewed, or pacsd no longer accepts it. Sign in again to go on where you were.'));
  parts.push(h('p', {}, 'This pacsd requires you to sign in before it shows any patient data.'));
  if (config.auth.oidc) {
    parts.push(h('p', {}, h('button', { type: 'button', onclick: () => auth.signIn().catch(showError) }, 'Sign in with your organisation')));
  }
  if (config.auth.modes.includes('token')) {
    const input = h('input', { type: 'password', id: 'token', autocomplete: 'off', required: true });
    parts.push(h('form', {
      class: 'token-form',
      onsubmit: (e) => {
        e.preventDefault();
        auth.useToken(input.value.trim());
        start();
      },
    }, h('div', { class: 'field' }, h('label', { for: 'token' }, 'Access token'), input), h('button', { type: 'submit' }, 'Use token')));
  }
  replace(main, h('section', { class: 'panel narrow' }, parts));
}

function parseHash() {
  const hash = location.hash.startsWith('#/') ? location.hash.slice(2) : 'studies';
  const [path, qs = ''] = hash.split('?');
  const [name, ...rest] = path.split('/').map(decodeURIComponent);
  return { name: pages[name] ? name : 'studies', rest, params: new URLSearchParams(qs) };
}

async function route() {
  if (location.hash && !location.hash.startsWith('#/')) return; // an in-page anchor
  const { name, rest, params } = parseHash();
  const page = pages[name];
  const main = document.getElementById('main');
  delete main.dataset.page;
  current?.controller.abort();
  const controller = new AbortController();
  current = { controller, name };
  renderNav(page.nav ?? name);
  if (authRequired() && !config.principal) {
    signInPanel(main);
    return;
  }
  document.title = `${page.title} · pacsd`;
  if (!can(page.scope)) {
    replace(main, notice('unavailable', 'Not allowed', `Your account does not have the "${page.scope}" scope that this page needs.`));
    return;
  }
  try {
    const mod = await page.load();
    if (controller.signal.aborted) return;
    const ctx = {
      config,
      can,
      main,
      rest,
      params,
      signal: controller.signal,
      navigate: (hash) => {
        if (location.hash === hash) route();
        else location.hash = hash;
      },
      setTitle: (t) => {
        document.title = `${t} · pacsd`;
      },
    };
    await mod.render(ctx);
    if (!controller.signal.aborted) main.dataset.page = name;
    if (!first && !controller.signal.aborted && !main.contains(document.activeElement)) main.focus({ preventScroll: true });
    first = false;
  } catch (err) {
    if (err?.name === 'AbortError') return;
    showError(err);
  }
}

// signedOut shows the sign-in panel when the server no longer takes the
// page's token, or the token ran out and could not be renewed.
function signedOut() {
  if (!config.principal) return;
  config.principal = null;
  sessionEnded = true;
  renderAccount();
  route();
}

async function start() {
  try {
    await loadConfig();
    if (config.auth.oidc || config.auth.modes.includes('token')) {
      let returnTo = null;
      try {
        returnTo = await auth.init(config.auth.oidc, renderAccount, signedOut);
      } catch (err) {
        showError(err);
        return;
      }
      api.configure({ token: auth.freshToken, unauthorized: signedOut });
      if (await auth.freshToken()) {
        sessionEnded = false;
        await loadConfig(); // the principal, now that a token goes with the request
      }
      if (returnTo && location.hash !== returnTo) location.hash = returnTo;
    }
    renderAccount();
    await route();
  } catch (err) {
    showError(err);
  }
}

window.addEventListener('hashchange', route);
document.querySelector('.skip')?.addEventListener('click', (e) => {
  e.preventDefault();
  document.getElementById('main').focus();
});
start();
