// ohif-signin.mjs opens the OHIF viewer in headless Chromium twice, with
// pacsd's sign-in on: once configured without OpenID Connect, which must
// get nothing from pacsd, and once configured with Hydra as its provider,
// which must send the browser to sign in (Authorization Code with PKCE),
// come back and show the study list, then open a study and fetch its
// images with the token. It prints what it saw as one JSON object on
// standard output and judges nothing: TestOHIFSignIn does.
//
// Usage: node ohif-signin.mjs PLAN.json (see ohifSignInPlan in ohifsignin_test.go)
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { launch, loopbackOnly } from './browser.mjs';

console.log = console.error;

const plan = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const t = plan.timeoutMs;
const out = {
  steps: {},
  anonymous: { visible: [], requests: [] },
  signedIn: { visible: [], requests: [], visitedProvider: false, path: '' },
  viewer: { frames: [] },
  renewed: {},
  tokenRequests: [],
  blocked: [],
  pageErrors: [],
  screenshots: [],
};

const browser = await launch(plan.chromium);

let page;
let record = null; // where the responses of pacsd go

async function step(name, fn) {
  try {
    await fn();
    out.steps[name] = null;
  } catch (err) {
    out.steps[name] = String(err?.stack ?? err).slice(0, 2000);
    await shot(`failed-${name}`).catch(() => {});
  }
}

async function shot(name) {
  const path = join(plan.screenshotDir, `ohif-signin-${name}.png`);
  await page.screenshot({ path });
  out.screenshots.push(path);
}

// visible returns the patient names of the plan that the page shows,
// waiting for them until ms have passed.
async function visible(ms) {
  const end = Date.now() + ms;
  const seen = [];
  for (const name of plan.patientNames) {
    try {
      await page.getByText(name, { exact: true }).first().waitFor({ state: 'visible', timeout: Math.max(500, end - Date.now()) });
      seen.push(name);
    } catch {
      // Not shown.
    }
  }
  return seen;
}

try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  await loopbackOnly(context, out.blocked);
  await context.addInitScript(() => localStorage.setItem('shownTours', JSON.stringify(['basicViewerTour'])));
  page = await context.newPage();
  page.on('request', (req) => {
    const u = new URL(req.url());
    if (req.method() === 'POST' && `${u.origin}${u.pathname}` === `${plan.issuer}oauth2/token`) {
      out.tokenRequests.push(new URLSearchParams(req.postData() ?? '').get('grant_type'));
    }
    if (req.isNavigationRequest() && req.url().startsWith(`${plan.issuer}oauth2/auth`)) out.signedIn.visitedProvider = true;
  });
  page.on('response', (resp) => {
    if (!record || !resp.url().startsWith(`${plan.pacsdOrigin}/`)) return;
    const u = new URL(resp.url());
    record.push({ method: resp.request().method(), url: u.pathname + u.search, status: resp.status(), auth: Boolean(resp.request().headers().authorization) });
  });
  page.on('pageerror', (err) => out.pageErrors.push(String(err?.stack ?? err).slice(0, 1000)));

  // The viewer without sign-in asks pacsd, which refuses.
  await step('anonymous', async () => {
    record = out.anonymous.requests;
    await page.goto(`${plan.anonymousURL}/`, { waitUntil: 'load' });
    await page.waitForResponse((r) => r.url().startsWith(`${plan.pacsdOrigin}/dicom-web/studies`), { timeout: t });
    out.anonymous.visible = await visible(3000);
    await shot('anonymous');
  });

  // The viewer with sign-in goes to the provider first and comes back
  // signed in.
  await step('sign-in', async () => {
    record = out.signedIn.requests;
    await page.goto(`${plan.signedInURL}/`, { waitUntil: 'load' });
    out.signedIn.visible = await visible(t);
    out.signedIn.path = new URL(page.url()).pathname;
    await shot('study-list');
  });

  await step('viewer', async () => {
    record = out.signedIn.requests;
    const frame = page.waitForResponse((r) => r.url().startsWith(`${plan.pacsdOrigin}/dicom-web/studies/${plan.study}/`) && r.url().includes('/frames/'), { timeout: t });
    await page.goto(`${plan.signedInURL}/viewer?StudyInstanceUIDs=${plan.study}`, { waitUntil: 'load' });
    const r = await frame;
    out.viewer.frames.push({ status: r.status(), auth: Boolean(r.request().headers().authorization) });
    await page.waitForTimeout(500);
    await shot('viewer');
  });
  // The access token runs out while the viewer is open: oidc-client-ts
  // renews it with the refresh token, and going back to the study list
  // searches pacsd with the new one.
  await step('renewed', async () => {
    const user = () => page.evaluate(() => {
      const key = Object.keys(sessionStorage).find((k) => k.startsWith('oidc.user:'));
      return key ? JSON.parse(sessionStorage.getItem(key)) : null;
    });
    const before = await user();
    if (!before) throw new Error('OHIF keeps no user in sessionStorage');
    out.renewed.before = before.access_token;
    const ms = before.expires_at * 1000 - Date.now() + 1500;
    if (ms > 0) await page.waitForTimeout(ms);
    record = out.renewed.requests = [];
    const qido = page.waitForResponse((r) => r.url().startsWith(`${plan.pacsdOrigin}/dicom-web/studies?`) && r.request().method() === 'GET', { timeout: t });
    await page.locator('[data-cy="return-to-work-list"]').first().click();
    const r = await qido;
    out.renewed.qido = { status: r.status(), auth: Boolean(r.request().headers().authorization) };
    out.renewed.visible = await visible(t);
    out.renewed.after = (await user())?.access_token ?? '';
    await shot('renewed');
  });
} finally {
  await browser.close();
}

process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
