// install-ohif.mjs installs the prebuilt OHIF viewer that TestOHIF serves:
// the dist/ directory of the npm package @ohif/app, unpacked into
// node_modules/.ohif. npm runs it after every `npm install` and `npm ci`
// (the postinstall script of package.json), so it comes and goes with
// node_modules like the dependencies in package-lock.json.
//
// Why not a dependency: @ohif/app ships the whole viewer built (index.html,
// the JavaScript bundles, the WebAssembly codecs), which is all a test
// needs, but it also declares the ~40 packages it was built from, and the
// registry does not serve all of them at the versions it names (npm stops
// with ETARGET on @ohif/i18n). Only the package's own tarball is fetched,
// with `npm pack`, and it is checked against the integrity pinned in
// package.json ("ohif"), as npm checks the packages of the lock file.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { spec, integrity } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).ohif;
const dest = join(root, 'node_modules', '.ohif');

// An install that is already there, of the pinned package, is kept.
const stamp = join(dest, '.integrity');
if (existsSync(stamp) && readFileSync(stamp, 'utf8') === integrity && existsSync(join(dest, 'dist', 'index.html'))) {
  process.exit(0);
}

// Inside an npm script, npm_execpath is the npm that runs it; run by hand,
// the npm on PATH.
const npm = process.env.npm_execpath ? [process.execPath, process.env.npm_execpath] : ['npm'];
// The work directory is beside the destination, so that the unpacked
// package can be renamed into place.
mkdirSync(join(root, 'node_modules'), { recursive: true });
const tmp = mkdtempSync(join(root, 'node_modules', '.ohif-'));
try {
  const out = execFileSync(npm[0], [...npm.slice(1), 'pack', spec, '--json', '--pack-destination', tmp], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const tarball = join(tmp, JSON.parse(out)[0].filename);
  const got = 'sha512-' + createHash('sha512').update(readFileSync(tarball)).digest('base64');
  if (got !== integrity) {
    throw new Error(`${spec}: tarball integrity ${got}, package.json pins ${integrity}`);
  }
  const unpacked = join(tmp, 'package');
  mkdirSync(unpacked);
  execFileSync('tar', ['-xzf', tarball, '-C', unpacked, '--strip-components=1'], { stdio: 'inherit' });
  if (!existsSync(join(unpacked, 'dist', 'index.html'))) {
    throw new Error(`${spec} has no dist/index.html: it does not ship a built viewer`);
  }
  writeFileSync(join(unpacked, '.integrity'), integrity);
  rmSync(dest, { recursive: true, force: true });
  renameSync(unpacked, dest);
  console.error(`install-ohif: ${spec} unpacked into node_modules/.ohif`);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
