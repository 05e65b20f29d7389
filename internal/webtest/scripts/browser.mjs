// browser.mjs is what every browser script starts with: Debian's
// Chromium, headless, launched by Playwright (which downloads no browser
// of its own), and pages kept to loopback, where the test's servers are.
import { chromium } from 'playwright-core';

// launch starts the Chromium at executablePath without the services that
// would reach the network by themselves.
export function launch(executablePath) {
  return chromium.launch({
    executablePath,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

// loopbackOnly lets the pages of context reach 127.0.0.1 only. Any other
// request (a font, a telemetry beacon) is refused at once instead of
// waiting for a network that is not there, and its URL added to refused.
export async function loopbackOnly(context, refused = []) {
  await context.route('**/*', (route) => {
    const u = new URL(route.request().url());
    if (u.hostname === '127.0.0.1' || u.protocol === 'data:' || u.protocol === 'blob:') return route.continue();
    refused.push(route.request().url());
    return route.abort('blockedbyclient');
  });
}
