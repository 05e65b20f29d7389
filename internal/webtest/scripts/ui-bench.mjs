// ui-bench.mjs times pacsd's study list in headless Chromium, for `make
// bench` (internal/bench, ui.go): how long from submitting a search until
// its results are painted, and from opening the page until its first list
// is painted. It prints the samples as JSON and judges nothing.
//
// Usage: node ui-bench.mjs PLAN.json
//
// The plan gives Chromium's path, the page's URL, the searches (each the
// hash of the study list with its search, e.g. "#/studies?name=SMI") and
// how many times to run each; the searches alternate, rep by rep.
import { readFileSync } from 'node:fs';

import { launch, loopbackOnly } from './browser.mjs';

console.log = console.error;

const plan = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const out = { searches: {}, errors: [] };

const browser = await launch(plan.chromium);

// painted waits for the list drawn after the last navigation, then for
// the frame that shows it, and returns the page's clock then.
const painted = (page) => page.evaluate(() => new Promise((resolve, reject) => {
  const end = performance.now() + 30000;
  const poll = () => {
    const r = document.querySelector('section.results:not([data-old])');
    if (r?.dataset.state === 'loaded') {
      requestAnimationFrame(() => requestAnimationFrame(() => resolve(performance.now())));
    } else if (performance.now() > end) {
      reject(new Error('no results within 30 s'));
    } else {
      setTimeout(poll, 2);
    }
  };
  poll();
}));

try {
  const context = await browser.newContext({ viewport: { width: 1366, height: 768 } });
  await loopbackOnly(context);
  const page = await context.newPage();
  for (const s of plan.searches) out.searches[s.name] = { load: [], search: [], rows: 0 };
  for (let rep = 0; rep < plan.reps; rep += 1) {
    for (const s of plan.searches) {
      const res = out.searches[s.name];
      try {
        // Opening the page on the search: from navigation to the list.
        await page.goto('about:blank');
        await page.goto(`${plan.url}/${s.hash}`, { waitUntil: 'commit' });
        const loaded = await painted(page);
        res.load.push(loaded);
        res.rows = await page.$$eval('table.studies tbody tr', (trs) => trs.length).catch(() => 0);
        // The same search submitted from the form: from the submit to
        // the painted list.
        await page.evaluate(() => document.querySelector('section.results')?.setAttribute('data-old', '1'));
        const t0 = await page.evaluate(() => {
          const form = document.querySelector('form.search');
          const now = performance.now();
          form.requestSubmit();
          return now;
        });
        const t1 = await painted(page);
        res.search.push(t1 - t0);
      } catch (err) {
        out.errors.push(`${s.name}: ${String(err?.message ?? err).slice(0, 300)}`);
      }
    }
  }
} finally {
  await browser.close();
}

process.stdout.write(`${JSON.stringify(out)}\n`);
