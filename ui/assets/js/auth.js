// auth.js signs in with OpenID Connect: the Authorization Code flow with
// PKCE (RFC 7636) of a public client, as the OAuth 2.0 for Browser-Based
// Apps practice recommends, against the provider's discovery document.
// pacsd checks the access token on every request; the page only carries
// it. Tokens live in sessionStorage: they survive a reload of the tab
// but not its closing, and no other site can read them.

const SESSION = 'pacsd.session';
const PENDING = 'pacsd.signin';

let cfg = null; // the oidc part of /api/ui-config
let session = null; // {accessToken, refreshToken, idToken, expiresAt, name}
let refreshTimer = 0;
let refreshing = null; // the refresh under way, which every caller awaits
let changed = () => {};
let expired = () => {};

function b64url(bytes) {
  let s = '';
  for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function random(n) {
  return b64url(crypto.getRandomValues(new Uint8Array(n)));
}

async function challengeOf(verifier) {
  return b64url(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier)));
}

// claims decodes a JWT's payload, for display only: the server, not the
// page, verifies signatures.
function claims(jwt) {
  try {
    const part = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = decodeURIComponent(Array.from(atob(part), (c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`).join(''));
    return JSON.parse(json);
  } catch {
    return {};
  }
}

async function discovery() {
  if (!cfg?.issuer) throw new Error('this server names no sign-in provider');
  const issuer = cfg.issuer.replace(/\/$/, '');
  const cached = sessionStorage.getItem(`pacsd.discovery:${issuer}`);
  if (cached) return JSON.parse(cached);
  const resp = await fetch(`${issuer}/.well-known/openid-configuration`, { headers: { Accept: 'application/json' } });
  if (!resp.ok) throw new Error(`the sign-in provider's discovery document: ${resp.status} ${resp.statusText}`);
  const doc = await resp.json();
  if (doc.issuer && doc.issuer.replace(/\/$/, '') !== issuer) throw new Error(`the discovery document names issuer ${doc.issuer}, not ${issuer}`);
  sessionStorage.setItem(`pacsd.discovery:${issuer}`, JSON.stringify(doc));
  return doc;
}

function redirectURI() {
  return `${location.origin}/`;
}

function save(s) {
  session = s;
  if (s) sessionStorage.setItem(SESSION, JSON.stringify(s));
  else sessionStorage.removeItem(SESSION);
  clearTimeout(refreshTimer);
  if (s?.expiresAt) {
    // setTimeout takes at most 2^31-1 ms; a later expiry is checked
    // again then.
    const left = Math.min(s.expiresAt - Date.now(), 2 ** 31 - 1);
    if (s.refreshToken) {
      // Renew before expiry, so that no request meets a token that has
      // just run out: a minute before, or a quarter of the token's life
      // before when it lives less than four minutes.
      const lead = Math.min(60000, Math.max(0, (s.expiresAt - (s.issuedAt ?? Date.now())) / 4));
      refreshTimer = setTimeout(() => renew(), Math.max(1000, left - lead));
    } else {
      // Nothing to renew with: when the token runs out, the page asks
      // to sign in again rather than failing request by request.
      refreshTimer = setTimeout(() => (Date.now() < s.expiresAt ? save(session) : end()), Math.max(0, left));
    }
  }
  changed();
}

// end forgets a session that can no longer be used and says so.
function end() {
  if (!session) return;
  save(null);
  expired();
}

// renew refreshes the tokens, once however many ask at the same time,
// and ends the session when the provider refuses.
function renew() {
  refreshing ??= refresh().catch(() => end()).finally(() => { refreshing = null; });
  return refreshing;
}

async function tokenRequest(params) {
  const doc = await discovery();
  const body = new URLSearchParams({ client_id: cfg.client_id, ...params });
  const resp = await fetch(doc.token_endpoint, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' },
    body,
  });
  const j = await resp.json().catch(() => ({}));
  if (!resp.ok || !j.access_token) throw new Error(`sign-in failed: ${j.error_description ?? j.error ?? resp.status}`);
  return j;
}

function sessionFrom(j, previous) {
  const id = j.id_token ? claims(j.id_token) : {};
  return {
    accessToken: j.access_token,
    refreshToken: j.refresh_token ?? previous?.refreshToken ?? null,
    idToken: j.id_token ?? previous?.idToken ?? null,
    issuedAt: Date.now(),
    expiresAt: j.expires_in ? Date.now() + Number(j.expires_in) * 1000 : null,
    name: id.name ?? id.preferred_username ?? id.email ?? id.sub ?? previous?.name ?? 'signed in',
    nonce: id.nonce,
  };
}

async function refresh() {
  if (!session?.refreshToken) return;
  const j = await tokenRequest({ grant_type: 'refresh_token', refresh_token: session.refreshToken });
  save(sessionFrom(j, session));
}

// init takes the oidc configuration, finishes a sign-in the provider has
// just redirected back from, and restores the tab's session. It returns
// the hash route to show, and throws when the provider refused.
// onChange is called whenever the session changes, onExpired when it
// ends by itself: its token ran out and could not be renewed.
export async function init(oidc, onChange, onExpired) {
  cfg = oidc;
  if (onChange) changed = onChange;
  if (onExpired) expired = onExpired;
  const stored = sessionStorage.getItem(SESSION);
  if (stored) {
    try {
      session = JSON.parse(stored);
    } catch {
      session = null;
    }
  }
  const params = new URLSearchParams(location.search);
  if (!params.has('code') && !params.has('error')) {
    if (session && session.expiresAt && Date.now() > session.expiresAt && !session.refreshToken) session = null;
    if (session) save(session); // schedules the refresh
    return null;
  }
  const pending = JSON.parse(sessionStorage.getItem(PENDING) ?? 'null');
  sessionStorage.removeItem(PENDING);
  // The code and state leave the address bar at once, whatever happens.
  history.replaceState(null, '', `/${pending?.returnTo ?? '#/studies'}`);
  if (params.has('error')) throw new Error(`sign-in refused: ${params.get('error_description') ?? params.get('error')}`);
  if (!pending || pending.state !== params.get('state')) throw new Error('sign-in answer does not match the request made (state); sign in again');
  const j = await tokenRequest({
    grant_type: 'authorization_code',
    code: params.get('code'),
    redirect_uri: redirectURI(),
    code_verifier: pending.verifier,
  });
  const s = sessionFrom(j);
  if (s.nonce !== undefined && s.nonce !== pending.nonce) throw new Error('sign-in answer does not match the request made (nonce); sign in again');
  save(s);
  return pending.returnTo;
}

// signIn sends the browser to the provider.
export async function signIn() {
  const doc = await discovery();
  const verifier = random(48);
  const pending = { verifier, state: random(16), nonce: random(16), returnTo: location.hash || '#/studies' };
  sessionStorage.setItem(PENDING, JSON.stringify(pending));
  const scopes = new Set(['openid', ...(cfg.scopes ?? [])]);
  const q = new URLSearchParams({
    response_type: 'code',
    client_id: cfg.client_id,
    redirect_uri: redirectURI(),
    scope: [...scopes].join(' '),
    state: pending.state,
    nonce: pending.nonce,
    code_challenge: await challengeOf(verifier),
    code_challenge_method: 'S256',
  });
  if (cfg.audience) q.set('audience', cfg.audience);
  location.assign(`${doc.authorization_endpoint}?${q}`);
}

// signOut forgets the session and, when the provider offers it, ends
// the provider's session too.
export async function signOut() {
  const idToken = session?.idToken;
  save(null);
  let doc = null;
  try {
    doc = await discovery();
  } catch {
    // Without the discovery document the local sign-out is all there is.
  }
  if (doc?.end_session_endpoint) {
    const q = new URLSearchParams({ post_logout_redirect_uri: redirectURI(), client_id: cfg.client_id });
    if (idToken) q.set('id_token_hint', idToken);
    location.assign(`${doc.end_session_endpoint}?${q}`);
  }
}

// token returns the access token, or null when there is none or it has
// expired.
export function token() {
  if (!session) return null;
  if (session.expiresAt && Date.now() > session.expiresAt) return null;
  return session.accessToken;
}

// freshToken returns the access token, renewed first when it has run out
// and can be (a tab in the background runs its timers late).
export async function freshToken() {
  if (session?.refreshToken && session.expiresAt && Date.now() > session.expiresAt - 5000) await renew();
  return token();
}

export function name() {
  return session?.name ?? null;
}

// useToken signs in with a token pasted by hand (the server's machine
// tokens, --http-auth token).
export function useToken(t) {
  save(t ? { accessToken: t, refreshToken: null, idToken: null, expiresAt: null, name: 'token' } : null);
}
