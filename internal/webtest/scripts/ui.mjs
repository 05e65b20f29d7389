// ui.mjs uses pacsd's web interface in headless Chromium with Playwright,
// as a member of staff would, at 1366×768: it searches, pages and sorts
// the study list, opens a study from the keyboard, scrolls a series and
// changes the window, visits every page, signs in through OpenID Connect
// on a second origin and uses the actions there. It prints what it saw as
// one JSON object on standard output and judges nothing: TestUI does.
//
// Usage: node ui.mjs PLAN.json (see uiPlan in ui_test.go)
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

import { launch, loopbackOnly } from './browser.mjs';

console.log = console.error;

const plan = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const out = {
  steps: {},
  a11y: {},
  tab: [],
  contrast: [],
  search: { rows: [], ms: 0, paintMs: 0, keyboardSearch: false },
  pages: [],
  sorted: {},
  study: {},
  scroll: { shown: [], hashes: [] },
  window: { before: {}, preset: {}, drag: {} },
  missing: {},
  dialogs: {},
  fake: { queue: [], audit: [], download: {}, readOnly: { actions: [], nav: [] } },
  real: { queue: [], download: {} },
  requests: [],
  otherHosts: [],
  consoleErrors: [],
  pageErrors: [],
  csp: [],
  screenshots: [],
};

const browser = await launch(plan.chromium);

// step runs one part of the walk; a failure is recorded and the walk
// goes on with the next part.
async function step(name, fn) {
  try {
    await fn();
    out.steps[name] = null;
  } catch (err) {
    out.steps[name] = String(err?.stack ?? err).slice(0, 2000);
    try {
      await shot(`failed-${name}`);
    } catch {
      // The page may be gone.
    }
  }
}

let page;
const t = plan.timeoutMs;

async function shot(name) {
  const path = join(plan.screenshotDir, `ui-${name}.png`);
  await page.screenshot({ path, fullPage: true });
  out.screenshots.push(path);
}

// The checks every page gets: every control named, images with alt
// text, nothing wider than the screen.
async function a11y(name) {
  out.a11y[name] = await page.evaluate(() => {
    const nameOf = (el) => {
      const aria = el.getAttribute('aria-label');
      if (aria && aria.trim()) return aria.trim();
      const by = el.getAttribute('aria-labelledby');
      if (by) {
        const s = by.split(/\s+/).map((id) => document.getElementById(id)?.textContent ?? '').join(' ').trim();
        if (s) return s;
      }
      if (el.labels && el.labels.length) {
        const s = [...el.labels].map((l) => l.textContent).join(' ').trim();
        if (s) return s;
      }
      if (['A', 'BUTTON', 'SUMMARY'].includes(el.tagName)) {
        const s = (el.textContent ?? '').trim() || [...el.querySelectorAll('img[alt]')].map((i) => i.alt).join(' ').trim();
        if (s) return s;
      }
      return (el.getAttribute('title') ?? '').trim();
    };
    const visible = (el) => Boolean(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
    const desc = (el) => `<${el.tagName.toLowerCase()}${el.name ? ` name=${el.name}` : ''}${el.id ? ` id=${el.id}` : ''}${el.className ? ` class="${el.className}"` : ''}>`;
    const unlabelled = [];
    for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea, button, a[href], [tabindex]:not([tabindex="-1"]), img')) {
      if (!visible(el)) continue;
      if (el.tagName === 'IMG') {
        if (!el.hasAttribute('alt')) unlabelled.push(desc(el));
      } else if (!nameOf(el)) {
        unlabelled.push(desc(el));
      }
    }
    return { unlabelled, overflow: Math.max(0, document.documentElement.scrollWidth - window.innerWidth) };
  });
}

// contrast measures the text contrast (WCAG 2.1) of the first element
// each selector finds, against the first opaque background behind it.
async function contrast(selectors) {
  const found = await page.evaluate((sels) => {
    const rgb = (s) => (s.match(/[\d.]+/g) ?? []).map(Number);
    const lum = ([r, g, b]) => {
      const f = (c) => {
        c /= 255;
        return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
      };
      return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const res = [];
    for (const sel of sels) {
      const el = document.querySelector(sel);
      if (!el) continue;
      const fg = getComputedStyle(el).color;
      let bg = 'rgb(255, 255, 255)';
      for (let e = el; e; e = e.parentElement) {
        const c = getComputedStyle(e).backgroundColor;
        const v = rgb(c);
        if (v.length >= 3 && (v.length === 3 || v[3] > 0.5)) {
          bg = c;
          break;
        }
      }
      const a = lum(rgb(fg));
      const b = lum(rgb(bg));
      res.push({ what: sel, fg, bg, ratio: (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05) });
    }
    return res;
  }, selectors);
  out.contrast.push(...found);
}

async function rows() {
  return page.$$eval('table.studies tbody tr', (trs) => trs.map((tr) => ({
    study: tr.dataset.study, name: tr.cells[1].textContent.trim(), date: tr.cells[4].textContent.trim(),
  })));
}

// results waits for a study list drawn after the last navigation.
async function results(hashPart) {
  await page.waitForFunction((part) => location.hash.includes(part) &&
    document.querySelector('section.results:not([data-old])')?.dataset.state === 'loaded', hashPart, { timeout: t });
}

// open navigates to url. Within the page that is often a change of the
// hash only, after which the old page stays in view until the new one is
// drawn: it is marked first, so that no wait mistakes it for the new.
async function open(url) {
  await page.evaluate(() => {
    document.querySelector('main')?.removeAttribute('data-page');
    document.querySelector('section.results')?.setAttribute('data-old', '1');
  }).catch(() => {});
  await page.goto(url, { waitUntil: 'load' });
}

// shown waits until the page named name has been drawn.
async function shown(name) {
  await page.waitForSelector(`main[data-page="${name}"]`, { timeout: t });
}

async function markOld() {
  await page.evaluate(() => document.querySelector('section.results')?.setAttribute('data-old', '1'));
}

async function viewerShows(n) {
  await page.waitForFunction((k) => {
    const v = document.querySelector('.viewer');
    const img = v?.querySelector('.stage img');
    return v?.dataset.shown === String(k) && img?.complete && img.naturalWidth > 0;
  }, n, { timeout: t });
}

async function imageHash() {
  return page.evaluate(async () => {
    const img = document.querySelector('.viewer .stage img');
    if (!img?.src) return '';
    await img.decode().catch(() => {});
    const c = document.createElement('canvas');
    c.width = img.naturalWidth;
    c.height = img.naturalHeight;
    const g = c.getContext('2d');
    g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    let h = 2166136261;
    for (let i = 0; i < d.length; i += 4) {
      h ^= d[i];
      h = Math.imul(h, 16777619);
    }
    return `${(h >>> 0).toString(16)}:${c.width}x${c.height}`;
  });
}

// settledWindow waits until the viewer shows one window for a while:
// a drag sends a burst of requests, and the last one wins.
async function settledWindow() {
  let last = null;
  let since = Date.now();
  const end = Date.now() + t;
  while (Date.now() < end) {
    const w = await page.evaluate(() => {
      const v = document.querySelector('.viewer');
      const img = v?.querySelector('.stage img');
      return img?.complete ? v.dataset.window : null;
    });
    if (w !== last) {
      last = w;
      since = Date.now();
    } else if (Date.now() - since > 700) {
      return w;
    }
    await page.waitForTimeout(100);
  }
  throw new Error('the viewer did not settle on a window');
}

async function mainText() {
  return page.$eval('main', (m) => m.innerText);
}

async function until(fn, what) {
  const end = Date.now() + t;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await page.waitForTimeout(100);
  }
}

try {
  const context = await browser.newContext({ viewport: { width: 1366, height: 768 }, acceptDownloads: true });
  await loopbackOnly(context, out.otherHosts);
  page = await context.newPage();
  page.on('response', (resp) => {
    const u = new URL(resp.url());
    if (u.hostname !== '127.0.0.1') return;
    out.requests.push({ method: resp.request().method(), url: u.pathname + u.search, status: resp.status() });
  });
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const text = msg.text().slice(0, 500);
    out.consoleErrors.push({ text, url: msg.location()?.url ?? '' });
    if (text.includes('Content Security Policy')) out.csp.push(text);
  });
  page.on('pageerror', (err) => out.pageErrors.push(String(err?.stack ?? err).slice(0, 1000)));

  // The study list as it first appears, and the Tab order from the top.
  await step('tab', async () => {
    await open(`${plan.url}/`);
    await results('');
    await a11y('studies');
    for (let i = 0; i < 40; i += 1) {
      await page.keyboard.press('Tab');
      const f = await page.evaluate(() => {
        const el = document.activeElement;
        if (!el || el === document.body) return null;
        const label = el.labels?.[0]?.textContent?.trim() ?? el.getAttribute('aria-label') ?? el.textContent?.trim() ?? '';
        const s = getComputedStyle(el);
        return { desc: `${el.tagName.toLowerCase()}:${label}`, outline: s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0, name: el.getAttribute('name') };
      });
      if (!f) continue;
      out.tab.push({ desc: f.desc, outline: f.outline });
      if (f.name === 'name') {
        // Search from the keyboard alone.
        await markOld();
        await page.keyboard.type(plan.searchName);
        await page.keyboard.press('Enter');
        await results(`name=${plan.searchName}`);
        const r = await rows();
        out.search.keyboardSearch = r.length > 0;
        // Back to the field, to go on through the form.
        await page.focus('input[name=name]');
      }
      if (f.desc === 'button:Search') break;
    }
  });

  await step('search', async () => {
    await open(`${plan.url}/#/studies`);
    await results('studies');
    await markOld();
    await page.fill('input[name=name]', plan.searchName);
    const started = Date.now();
    await page.click('form.search button[type=submit]');
    await results(`name=${plan.searchName}`);
    out.search.ms = Date.now() - started;
    out.search.paintMs = await page.evaluate(() => new Promise((resolve) => {
      const s = performance.getEntriesByName('pacsd:search').at(-1)?.startTime ?? 0;
      requestAnimationFrame(() => requestAnimationFrame(() => resolve(performance.now() - s)));
    }));
    out.search.rows = await rows();
    await contrast(['body', 'header.top .brand', 'nav.main a', 'form.search label', '.hint', 'form.search button[type=submit]',
      'form.search button.secondary', 'table.list thead th button', 'table.studies td', 'table.studies td a', '.pager button:not([disabled])']);
    await shot('studies');
  });

  await step('paging', async () => {
    await open(`${plan.url}/#/studies?name=${plan.searchName}&limit=${plan.pageSize}`);
    await results(`limit=${plan.pageSize}`);
    for (let i = 0; i < 10; i += 1) {
      out.pages.push(await rows());
      const next = page.getByRole('button', { name: 'Next page' });
      if (await next.isDisabled()) break;
      await markOld();
      await next.click();
      await results(`offset=${(i + 1) * plan.pageSize}`);
    }
  });

  await step('sort', async () => {
    await open(`${plan.url}/#/studies?name=${plan.searchName}`);
    await results(`name=${plan.searchName}`);
    for (const dir of ['ascending', 'descending']) {
      await markOld();
      await page.getByRole('button', { name: 'Study date' }).click();
      await results(dir === 'ascending' ? 'sort=StudyDate' : 'sort=-StudyDate');
      const th = await page.$eval('th[aria-sort]', (e) => e.getAttribute('aria-sort'));
      out.sorted[th] = (await rows()).map((r) => r.date);
    }
  });

  await step('study', async () => {
    await open(`${plan.url}/#/studies?name=${plan.searchName}`);
    await results(`name=${plan.searchName}`);
    // Open the study from the keyboard.
    await page.focus(`tr[data-study="${plan.study}"] a`);
    await page.keyboard.press('Enter');
    await page.waitForSelector('ul.series button', { timeout: t });
    await viewerShows(1);
    out.study.heading = await page.$eval('main h1', (e) => e.textContent.trim());
    out.study.series = await page.$$eval('ul.series button', (b) => b.length);
    out.study.ohif = await page.getByRole('link', { name: 'Open in OHIF' }).getAttribute('href');
    await page.click(`ul.series button[data-series="${plan.series}"]`);
    await page.waitForFunction((n) => document.querySelector('.viewer')?.dataset.frames === String(n), plan.frames, { timeout: t });
    await viewerShows(1);
    out.study.frames = Number(await page.$eval('.viewer', (v) => v.dataset.frames));
    await a11y('study');
    await contrast(['main h1', 'dl.facts dt', 'dl.facts dd', 'ul.series button', 'button.danger', '.viewer .overlay', '.viewer .help', '.viewer .controls label']);
    await shot('study');
  });

  await step('scroll', async () => {
    const stage = page.locator('.viewer .stage');
    await stage.hover();
    out.scroll.shown.push(Number(await page.$eval('.viewer', (v) => v.dataset.shown)));
    out.scroll.hashes.push(await imageHash());
    for (let i = 2; i <= plan.frames; i += 1) {
      await page.mouse.wheel(0, 100);
      await viewerShows(i);
      out.scroll.shown.push(i);
      out.scroll.hashes.push(await imageHash());
    }
    await stage.focus();
    await page.keyboard.press('Home');
    await viewerShows(1);
    out.scroll.home = 1;
    await page.keyboard.press('End');
    await viewerShows(plan.frames);
    out.scroll.end = plan.frames;
    // And back a few with the arrow keys.
    await page.keyboard.press('Home');
    await page.keyboard.press('ArrowDown');
    await viewerShows(Math.min(2, plan.frames));
  });

  await step('window', async () => {
    out.window.before = { window: await settledWindow(), hash: await imageHash() };
    if (plan.preset) {
      await page.getByRole('button', { name: plan.preset, exact: true }).click();
      out.window.preset = { window: await settledWindow(), hash: await imageHash() };
      await shot('window-preset');
    }
    const box = await page.locator('.viewer .stage').boundingBox();
    const cx = box.x + box.width / 2;
    const cy = box.y + box.height / 2;
    await page.mouse.move(cx, cy);
    await page.mouse.down();
    await page.mouse.move(cx - 120, cy + 60, { steps: 8 });
    await page.mouse.up();
    out.window.drag = { window: await settledWindow(), hash: await imageHash() };
    await shot('window-drag');
  });

  // The pages of pacsd's own /api, and those it may lack: each page must
  // show what it has, or say that the server does not offer it.
  await step('missing', async () => {
    for (const name of ['queue', 'migrations', 'audit', 'system']) {
      await open(`${plan.url}/#/${name}`);
      await shown(name);
      out.missing[name] = await mainText();
      await a11y(name);
      if (name === 'queue') await shot('queue-unavailable');
    }
  });

  // pacsd deletes the study into its trash and restores it.
  await step('delete-restore', async () => {
    await open(`${plan.url}/#/study/${plan.study}`);
    await viewerShows(1);
    const messages = () => page.$eval('main .messages', (e) => e.innerText.trim()).catch(() => '');
    await page.getByRole('button', { name: 'Delete…' }).click();
    await page.getByLabel('Reason (required)').fill('duplicate of another study');
    await page.locator('dialog').getByRole('button', { name: 'Delete' }).click();
    out.dialogs.delete = await until(async () => {
      const m = await messages();
      if (m.includes('trash')) return m;
      const s = await page.$eval('dialog .dialog-status', (d) => d.innerText).catch(() => '');
      return s || null;
    }, 'the delete to answer');
    out.real.deleted = await page.evaluate(async (u) => (await fetch(u)).status, `${plan.url}/dicom-web/studies?StudyInstanceUID=${plan.study}`);
    await page.getByRole('button', { name: 'Restore it' }).click();
    out.real.restoreNotice = await until(async () => ((await messages()).includes('restored') ? messages() : null), 'the restore notice');
  });

  // pacsd sends the study to a real storescp, and the queue drains.
  await step('send', async () => {
    await open(`${plan.url}/#/study/${plan.study}`);
    await viewerShows(1);
    const messages = () => page.$eval('main .messages', (e) => e.innerText.trim()).catch(() => '');
    await page.getByRole('button', { name: 'Send…' }).click();
    out.dialogs.send = await until(() => page.$eval('dialog', (d) => d.innerText).catch(() => null), 'the send dialog');
    await a11y('send-dialog');
    await page.getByLabel(plan.destination).check();
    await page.locator('dialog').getByRole('button', { name: 'Send' }).click();
    out.real.sendNotice = await until(messages, 'the send notice');
    await page.getByRole('link', { name: 'Watch the queue' }).click();
    await page.waitForSelector('main[data-page=queue] table.queue', { timeout: t });
    // The page refreshes itself: wait until nothing is left to send.
    const row = () => page.$eval(`tr[data-destination="${plan.destination}"]`, (tr) => [...tr.cells].map((c) => c.innerText.trim())).catch(() => null);
    out.real.queue = await until(async () => {
      const r = await row();
      return r && r[1] === '0' && r[2] === '0' && r[3] === '0' && Number(r[4]) >= 1 ? r : null;
    }, 'the queue to drain');
    await shot('queue-drained');
  });

  await step('download', async () => {
    await open(`${plan.url}/#/study/${plan.study}`);
    await viewerShows(1);
    const [download] = await Promise.all([
      page.waitForEvent('download', { timeout: t }),
      page.getByRole('button', { name: 'Download ZIP' }).click(),
    ]);
    const path = join(plan.screenshotDir, 'study.zip');
    await download.saveAs(path);
    out.real.download = { name: download.suggestedFilename(), size: statSync(path).size, path };
  });

  // The signed-in origin, whose /api answers as docs/api.md says.
  const f = plan.fakeURL;
  await step('sign-in', async () => {
    await open(`${f}/#/studies`);
    await page.getByRole('button', { name: 'Sign in with your organisation' }).click();
    await page.waitForFunction(() => document.querySelector('#account .who')?.textContent, null, { timeout: t });
    out.fake.who = await page.$eval('#account .who', (e) => e.textContent);
    out.fake.signedIn = !(await page.evaluate(() => location.search.includes('code=')));
    await results('studies');
  });

  await step('changes', async () => {
    out.fake.changesNotice = await until(() => page.$eval('.live .notice', (e) => e.innerText).catch(() => null), 'the change feed notice');
  });

  await step('queue', async () => {
    await page.evaluate(() => { location.hash = '#/queue'; });
    await page.waitForSelector('main[data-page=queue] table.queue', { timeout: t });
    await until(() => page.$('main h2'), 'the failed tasks');
    out.fake.queue = (await mainText()).split('\n');
    await a11y('queue');
    await shot('queue');
    await page.getByRole('button', { name: /Retry 1 failed/ }).click();
    out.fake.retryNotice = await until(() => page.$eval('main .notice', (e) => e.innerText).catch(() => null), 'the retry notice');
  });

  await step('migrations', async () => {
    await page.evaluate(() => { location.hash = '#/migrations'; });
    await page.waitForSelector('main[data-page=migrations] section.card', { timeout: t });
    out.fake.migration = await page.$eval('section.card', (e) => e.innerText);
    out.fake.migrationError = await page.$eval('section.card table', (e) => e.innerText).catch(() => '');
    await a11y('migrations');
    await shot('migrations');
  });

  await step('audit', async () => {
    await page.evaluate(() => { location.hash = '#/audit'; });
    await page.waitForSelector('main[data-page=audit] table.list tbody tr', { timeout: t });
    out.fake.audit = await page.$$eval('main table.list tbody tr', (trs) => trs.map((tr) => tr.innerText));
    await a11y('audit');
  });

  await step('system', async () => {
    await page.evaluate(() => { location.hash = '#/system'; });
    await page.waitForSelector('main[data-page=system] dl.facts', { timeout: t });
    out.fake.system = await page.$eval('main dl.facts', (e) => e.innerText);
    await shot('system');
  });

  await step('actions', async () => {
    await page.evaluate((s) => { location.hash = `#/study/${s}`; }, plan.study);
    await viewerShows(1);
    const messages = () => page.$eval('main .messages', (e) => e.innerText.trim()).catch(() => '');

    await page.getByRole('button', { name: 'Send…' }).click();
    await page.getByLabel('REPORTING').check();
    await a11y('send-dialog-signed-in');
    await page.locator('dialog').getByRole('button', { name: 'Send' }).click();
    out.fake.sendNotice = await until(messages, 'the send notice');

    const [download] = await Promise.all([
      page.waitForEvent('download', { timeout: t }),
      page.getByRole('button', { name: 'Download ZIP' }).click(),
    ]);
    out.fake.download = { name: download.suggestedFilename(), size: statSync(await download.path()).size };

    await page.getByRole('button', { name: 'Delete…' }).click();
    await page.getByLabel('Reason (required)').fill('sent to the wrong archive');
    await page.locator('dialog').getByRole('button', { name: 'Delete' }).click();
    out.fake.deleteNotice = await until(async () => ((await messages()).includes('trash') ? messages() : null), 'the delete notice');
    await page.getByRole('button', { name: 'Restore it' }).click();
    out.fake.restoreNotice = await until(async () => ((await messages()).includes('restored') ? messages() : null), 'the restore notice');

    await page.getByRole('button', { name: 'Correct…' }).click();
    await a11y('correct-dialog');
    await page.getByLabel('Study description').fill('Corrected description');
    await page.getByLabel('Reason (required)').fill('description typed on the wrong study');
    await page.locator('dialog').getByRole('button', { name: 'Save correction' }).click();
    await page.waitForFunction(() => !document.querySelector('dialog'), null, { timeout: t });
  });

  await step('read-only', async () => {
    await page.request.post(`${f}/_test/scopes?set=read`);
    await open(`${f}/#/study/${plan.study}`);
    await page.reload({ waitUntil: 'load' });
    await viewerShows(1);
    out.fake.readOnly.actions = await page.$$eval('.actions-bar > *', (els) => els.map((e) => e.textContent.trim()));
    out.fake.readOnly.nav = await page.$$eval('nav.main a', (as) => as.filter((a) => !a.hidden).map((a) => a.textContent.trim()));
  });
} finally {
  await browser.close();
}

process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
