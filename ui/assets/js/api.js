// api.js is how the pages talk to pacsd: DICOMweb for images and
// studies, /api for the rest (docs/api.md). Every request carries the
// signed-in principal's access token, when there is one.

export class APIError extends Error {
  constructor(status, message) {
    super(message);
    this.name = 'APIError';
    this.status = status;
  }
}

// NotAvailableError reports an endpoint this server does not offer: an
// optional request answered 404, 405 or 501.
export class NotAvailableError extends APIError {
  constructor(status, path) {
    super(status, `${path} is not available on this server`);
    this.name = 'NotAvailableError';
  }
}

let tokenSource = () => null;
let onUnauthorized = () => {};
let dicomwebRoot = '/dicom-web';

// configure sets where DICOMweb lives, where tokens come from (a function
// returning the token, or a promise of it) and what to do when the server
// asks for credentials.
export function configure({ root, token, unauthorized }) {
  if (root) dicomwebRoot = root.replace(/\/$/, '');
  if (token) tokenSource = token;
  if (unauthorized) onUnauthorized = unauthorized;
}

export function root() {
  return dicomwebRoot;
}

// query turns an object into a query string, leaving out empty values;
// arrays become repeated parameters.
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params ?? {})) {
    if (v === undefined || v === null || v === '') continue;
    if (Array.isArray(v)) v.forEach((x) => q.append(k, x));
    else q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

// request sends a request and returns the response when it succeeded.
// optional marks an endpoint the server may lack: 404, 405 and 501 then
// throw NotAvailableError.
export async function request(path, { method = 'GET', accept = 'application/json', body, json, signal, optional = false, headers = {} } = {}) {
  const h = { Accept: accept, ...headers };
  const token = await tokenSource();
  if (token) h.Authorization = `Bearer ${token}`;
  if (json !== undefined) {
    h['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  }
  const resp = await fetch(path, { method, headers: h, body, signal, cache: 'no-cache' });
  if (resp.ok) return resp;
  if (optional && (resp.status === 404 || resp.status === 405 || resp.status === 501)) {
    throw new NotAvailableError(resp.status, path.split('?')[0]);
  }
  if (resp.status === 401) onUnauthorized();
  throw new APIError(resp.status, await reason(resp));
}

// reason reads why a request failed from its body: a JSON error, or the
// first line of text.
async function reason(resp) {
  let text = '';
  try {
    text = await resp.text();
  } catch {
    // The body is gone; the status says enough.
  }
  try {
    const j = JSON.parse(text);
    text = j.error ?? j.message ?? j.reason ?? text;
  } catch {
    // Not JSON.
  }
  text = String(text).trim().split('\n')[0].slice(0, 300);
  return `${resp.status} ${resp.statusText}${text ? `: ${text}` : ''}`;
}

export async function getJSON(path, opts = {}) {
  const resp = await request(path, opts);
  if (resp.status === 204) return null;
  return resp.json();
}

export async function sendJSON(method, path, json, opts = {}) {
  const resp = await request(path, { ...opts, method, json });
  if (resp.status === 204 || resp.headers.get('Content-Length') === '0') return null;
  const type = resp.headers.get('Content-Type') ?? '';
  return type.includes('json') ? resp.json() : null;
}

// qido searches (PS3.18 §10.6) resource, a path below the DICOMweb root,
// and returns the matches, [] for none (204).
export async function qido(resource, params, signal) {
  const resp = await request(`${dicomwebRoot}${resource}${query(params)}`, { accept: 'application/dicom+json', signal });
  if (resp.status === 204) return [];
  return resp.json();
}

// dicomweb returns a path below the DICOMweb root.
export function dicomweb(path) {
  return `${dicomwebRoot}${path}`;
}

// imageURL fetches an image with the request's credentials and returns a
// blob: URL for an <img>, which the caller revokes when done. An <img
// src> of pacsd's URL could not carry the access token.
export async function imageURL(path, signal, accept = 'image/jpeg') {
  const resp = await request(path, { accept, signal });
  const blob = await resp.blob();
  return URL.createObjectURL(blob);
}

// limiter runs at most n tasks at once; the rest wait their turn.
export function limiter(n) {
  let running = 0;
  const waiting = [];
  const next = () => {
    if (running >= n || waiting.length === 0) return;
    running += 1;
    const { task, resolve, reject } = waiting.shift();
    task().then(resolve, reject).finally(() => {
      running -= 1;
      next();
    });
  };
  return (task) => new Promise((resolve, reject) => {
    waiting.push({ task, resolve, reject });
    next();
  });
}
