// ui-signin.mjs signs in to pacsd's web interface through a real OpenID
// Connect provider (Ory Hydra) in headless Chromium: first as a user with
// every scope, whose short-lived access token the page renews while it is
// used; then, after signing out, as a reader of one trust, whose token
// cannot be renewed, so that the page must ask to sign in again when it
// runs out. It prints what it saw as one JSON object on standard output
// and judges nothing: TestUISignIn does.
//
// Usage: node ui-signin.mjs PLAN.json (see signInPlan in uisignin_test.go)
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { launch, loopbackOnly } from './browser.mjs';

console.log = console.error;

const plan = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const t = plan.timeoutMs;
const out = {
  steps: {},
  anonymous: {},
  full: {},
  renewed: {},
  revoked: {},
  reader: {},
  expired: {},
  tokenRequests: [],
  requests: [],
  otherHosts: [],
  consoleErrors: [],
  pageErrors: [],
  screenshots: [],
};

const browser = await launch(plan.chromium);

let page;

// step runs one part of the walk; the first failure ends it, since each
// part starts where the one before left the page.
let failed = false;
async function step(name, fn) {
  if (failed) return;
  try {
    await fn();
    out.steps[name] = null;
  } catch (err) {
    failed = true;
    out.steps[name] = String(err?.stack ?? err).slice(0, 2000);
    await shot(`failed-${name}`).catch(() => {});
  }
}

async function shot(name) {
  const path = join(plan.screenshotDir, `signin-${name}.png`);
  await page.screenshot({ path, fullPage: true });
  out.screenshots.push(path);
}

async function mainText() {
  return page.$eval('main', (m) => m.innerText);
}

async function signInPanel(timeout = t) {
  await page.waitForSelector('main h1:text("Sign in")', { timeout });
}

// signIn presses the page's sign-in button and waits until the provider
// has sent the browser back and the page shows who is signed in.
async function signIn() {
  await page.getByRole('button', { name: 'Sign in with your organisation' }).click();
  await page.waitForFunction(() => document.querySelector('#account .who')?.textContent, null, { timeout: t });
  return page.$eval('#account .who', (e) => e.textContent);
}

// search searches by patient name from the study list's form, and
// returns the studies listed, or null when the page asked to sign in.
async function search(name) {
  if (!(await page.$('form.search'))) {
    await page.evaluate(() => { location.hash = '#/studies'; });
    await page.waitForSelector('form.search', { timeout: t });
  }
  await page.evaluate(() => document.querySelector('section.results')?.setAttribute('data-old', '1'));
  await page.fill('input[name=name]', name);
  await page.click('form.search button[type=submit]');
  await page.waitForFunction(() => document.querySelector('section.results:not([data-old])')?.dataset.state === 'loaded' ||
    document.querySelector('main h1')?.textContent === 'Sign in', null, { timeout: t });
  if (await page.$('main h1:text("Sign in")')) return null;
  return page.$$eval('table.studies tbody tr', (trs) => trs.map((tr) => tr.dataset.study));
}

// study opens a study and returns its heading and the actions offered.
async function study(uid) {
  await page.evaluate(() => document.querySelector('main')?.removeAttribute('data-page'));
  await page.evaluate((u) => { location.hash = `#/study/${u}`; }, uid);
  await page.waitForFunction(() => document.querySelector('main')?.dataset.page === 'study', null, { timeout: t });
  return {
    heading: await page.$eval('main h1', (e) => e.textContent.trim()),
    actions: await page.$$eval('.actions-bar > *', (els) => els.map((e) => e.textContent.trim())),
  };
}

async function session() {
  return page.evaluate(() => JSON.parse(sessionStorage.getItem('pacsd.session') ?? 'null'));
}

// waitPast waits until the access token of the session s has run out.
async function waitPast(s) {
  const ms = s.expiresAt - Date.now() + 1500;
  if (ms > 0) await page.waitForTimeout(ms);
}

try {
  const context = await browser.newContext({ viewport: { width: 1366, height: 768 } });
  await loopbackOnly(context, out.otherHosts);
  page = await context.newPage();
  page.on('request', (req) => {
    const u = new URL(req.url());
    if (req.method() === 'POST' && `${u.origin}${u.pathname}` === `${plan.issuer}oauth2/token`) {
      out.tokenRequests.push(new URLSearchParams(req.postData() ?? '').get('grant_type'));
    }
  });
  page.on('response', (resp) => {
    const u = new URL(resp.url());
    if (u.origin !== plan.url) return;
    out.requests.push({ method: resp.request().method(), url: u.pathname + u.search, status: resp.status(), auth: Boolean(resp.request().headers().authorization) });
  });
  page.on('console', (msg) => {
    if (msg.type() === 'error') out.consoleErrors.push({ text: msg.text().slice(0, 500), url: msg.location()?.url ?? '' });
  });
  page.on('pageerror', (err) => out.pageErrors.push(String(err?.stack ?? err).slice(0, 1000)));

  // Without sign-in: the page asks for it, and pacsd gives nothing.
  await step('anonymous', async () => {
    await page.goto(`${plan.url}/#/studies?name=${encodeURIComponent(plan.searchName)}`, { waitUntil: 'load' });
    await signInPanel();
    out.anonymous.text = await mainText();
    out.anonymous.qido = await page.evaluate(async (u) => {
      const r = await fetch(u, { headers: { Accept: 'application/dicom+json' } });
      return { status: r.status, wwwAuthenticate: r.headers.get('WWW-Authenticate') };
    }, `${plan.url}/dicom-web/studies`);
    await shot('anonymous');
  });

  await step('sign-in', async () => {
    out.full.who = await signIn();
    out.full.hash = await page.evaluate(() => location.hash);
    out.full.search = await search(plan.searchName);
    const s = await session();
    out.full.expiresInMs = s.expiresAt - Date.now();
    out.full.token = s.accessToken;
    out.full.study = await study(plan.studies.rxh);
    await shot('full');
  });

  // The token runs out while the page is in use: it is renewed with the
  // refresh token, and the page goes on without asking.
  await step('renewed', async () => {
    await waitPast(await session());
    out.renewed.search = await search(plan.searchName);
    out.renewed.token = (await session())?.accessToken ?? '';
    out.renewed.signInShown = (await page.$('main h1:text("Sign in")')) !== null;
  });

  // The provider revokes the user's tokens: the next renewal fails, and
  // the page asks to sign in again by itself.
  await step('revoked', async () => {
    const r = await fetch(`${plan.control}/revoke`, { method: 'POST' });
    if (!r.ok) throw new Error(`revoking: ${r.status}`);
    await signInPanel(2 * t);
    out.revoked.text = await mainText();
    out.revoked.session = Boolean(await session());
    const u = await fetch(`${plan.control}/user?name=reader`, { method: 'POST' });
    if (!u.ok) throw new Error(`switching the user: ${u.status}`);
  });

  await step('reader', async () => {
    out.reader.who = await signIn();
    out.reader.search = await search(plan.searchName);
    out.reader.study = await study(plan.studies.rxh);
    await shot('reader');
    out.reader.other = await study(plan.studies.rgt);
    out.reader.otherText = await mainText();
    out.reader.nav = await page.$$eval('nav.main a', (as) => as.filter((a) => !a.hidden).map((a) => a.textContent.trim()));
    out.reader.hasRefreshToken = Boolean((await session())?.refreshToken);
  });

  // The reader's token runs out and cannot be renewed: the page says so
  // and asks to sign in again, then comes back to where the reader was.
  await step('expired', async () => {
    await study(plan.studies.rxh);
    const s = await session();
    await waitPast(s);
    await signInPanel();
    out.expired.text = await mainText();
    await shot('expired');
    out.expired.who = await signIn();
    out.expired.hash = await page.evaluate(() => location.hash);
    await page.waitForFunction(() => document.querySelector('main')?.dataset.page === 'study', null, { timeout: t });
    out.expired.heading = await page.$eval('main h1', (e) => e.textContent.trim());
  });
  await step('sign-out', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await signInPanel();
    out.signedOut = { url: page.url(), session: Boolean(await session()), text: await mainText() };
  });
} finally {
  await browser.close();
}

process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
