#!/usr/bin/env node
// Bundle ringzero's CLI and its worker-thread entries with esbuild into dist/esm/, so a process starts without tsx's
// loader (which transpiles and resolves every TypeScript module through hooks on a separate thread: ~0.3 s of CPU per
// start on this host). Run by npm's `prepare` (so `npm ci` builds it) and by `npm run build`.
//
// bin/ringzero uses dist/esm/main.js only when it is not older than every file and folder under src/ (and this
// script): an edited source makes it fall back to tsx until the next build. Mtime and ctime both count, so a file
// copied in with an old mtime, a rename or a delete (its folder's times) still mark the bundle stale.
//
// Layout, and why: every output file (entries and the shared chunks of code splitting) sits flat in dist/esm/, two
// levels under the package root like src/<area>/, so the source's `new URL('../../package.json', import.meta.url)` and
// `new URL('../../bin/ringzero', import.meta.url)` still name the same files, and `siblingModule(import.meta.url,
// 'worker')` (src/kvm/spawn.ts) names dist/esm/worker.js, an entry of its own. The build checks both: a
// `new URL('<relative>', import.meta.url)` whose target would move, or a `new Worker(` outside src/kvm/spawn.ts, is
// an error (route workers through spawnModuleWorker + siblingModule, whose targets become entries here).
// npm packages stay external (koffi is native; the rest resolve from node_modules at run time as they do now), but
// commander. The CLI is also written as one CommonJS file, dist/cjs/main.cjs, which bin/ringzero runs with a V8 code
// cache (see the second build below).
//
// The stamp is the build's start time, written as main.js's mtime: a source saved while the build runs is newer.
// Output is written chunks first, then entries, each through a rename, so a process starting meanwhile sees a
// complete old or new bundle. Chunks that the new build does not name are removed a day after they were written.
//
//   node scripts/build.mjs [--quiet]
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const src = path.join(root, 'src');
const outdir = path.join(root, 'dist', 'esm');
const quiet = process.argv.includes('--quiet');
const log = (line) => { if (!quiet) process.stderr.write(`build: ${line}\n`); };

let esbuild;
try {
  esbuild = await import('esbuild');
} catch {
  // `npm ci --omit=dev` has no esbuild: ringzero still runs, through tsx.
  log('esbuild is not installed (a production-only install?): no bundle, bin/ringzero runs the sources through tsx');
  process.exit(0);
}

const started = Date.now();

function walk(dir, files = []) {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) walk(full, files);
    else if (entry.name.endsWith('.ts')) files.push(full);
  }
  return files;
}

// Worker entries: every siblingModule(import.meta.url, 'name') target.
const sources = walk(src);
const entries = { main: path.join(src, 'cli', 'main.ts') };
const problems = [];
for (const file of sources) {
  const text = fs.readFileSync(file, 'utf8');
  const rel = path.relative(root, file);
  for (const m of text.matchAll(/siblingModule\(\s*import\.meta\.url\s*,\s*'([\w-]+)'\s*\)/g)) {
    const name = m[1];
    const target = path.join(path.dirname(file), `${name}.ts`);
    if (!fs.existsSync(target)) problems.push(`${rel}: siblingModule '${name}' has no ${path.relative(root, target)}`);
    else if (entries[name] && entries[name] !== target) problems.push(`${rel}: worker entry '${name}' is also ${path.relative(root, entries[name])}: the bundle is flat, give it another name`);
    else entries[name] = target;
  }
  if (/\bnew Worker\(/.test(text.replace(/\/\/.*$/gm, '')) && rel !== path.join('src', 'kvm', 'spawn.ts')) {
    problems.push(`${rel}: new Worker( outside src/kvm/spawn.ts: start workers with spawnModuleWorker(siblingModule(import.meta.url, 'name'), data) so the bundle has the entry`);
  }
}

// Packages bundled into dist/esm/ rather than resolved from node_modules at run time (see the build options).
const BUNDLED_PACKAGES = ['commander'];
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
const externalPackages = Object.keys({ ...pkg.dependencies, ...pkg.devDependencies, ...pkg.optionalDependencies })
  .filter((name) => !BUNDLED_PACKAGES.includes(name))
  .flatMap((name) => [name, `${name}/*`]);

const result = await esbuild.build({
  entryPoints: entries,
  absWorkingDir: root,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  // npm packages stay external, but commander: every command loads it, and one bundled ESM chunk starts ~10 ms of
  // CPU faster than Node's CommonJS loader resolving, reading and wrapping its files. Its require() calls of Node's
  // modules get a `require` from REQUIRE_PRELUDE (below).
  external: externalPackages,
  outdir,
  entryNames: '[name]',
  chunkNames: 'chunk-[hash]',
  sourcemap: 'linked',
  metafile: true,
  write: false,
  logLevel: 'silent',
}).catch((error) => {
  process.stderr.write(`build: esbuild failed:\n${error.message}\n`);
  process.exit(1);
});
// The CLI once more as one CommonJS file, dist/cjs/main.cjs, which bin/ringzero compiles through vm.Script with a V8
// code cache (Node 20 has none for ES modules): a start then skips most parsing and compiling (a new-process restore:
// ~35 ms less CPU before the guest runs). Its import.meta.url is dist/esm/main.js's (same depth, same neighbours), so
// every `new URL(rel, import.meta.url)` and worker entry (siblingModule: dist/esm/worker.js) names what the ES module
// bundle would. The only dynamic import() left is RINGZERO_RUNVM_MODULE's, a test hook for which bin/ringzero runs the
// ES module bundle.
const cjsOutdir = path.join(root, 'dist', 'cjs');
const cjsResult = await esbuild.build({
  entryPoints: { main: entries.main },
  absWorkingDir: root,
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  external: externalPackages,
  outdir: cjsOutdir,
  outExtension: { '.js': '.cjs' },
  define: { 'import.meta.url': '__rzImportMetaUrl', 'import.meta.resolve': '__rzImportMetaResolve' },
  banner: {
    js: "'use strict';\n"
      + "const __rzImportMetaUrl = require('node:url').pathToFileURL(require('node:path').join(__dirname, '..', 'esm', 'main.js')).href;\n"
      + "const __rzImportMetaResolve = () => { throw new Error('import.meta.resolve: not in the CommonJS bundle (tsx only)'); };",
  },
  sourcemap: 'linked',
  metafile: true,
  write: false,
  logLevel: 'silent',
}).catch((error) => {
  process.stderr.write(`build: esbuild failed (CommonJS bundle):\n${error.message}\n`);
  process.exit(1);
});

for (const w of [...result.warnings, ...cjsResult.warnings]) log(`warning: ${w.text}${w.location ? ` (${w.location.file}:${w.location.line})` : ''}`);

// Relative URLs taken from import.meta.url must name the same file from dist/esm/ as from the source's folder.
const bundled = Object.keys(result.metafile.inputs).filter((f) => f.startsWith('src/'));
for (const rel of bundled) {
  const text = fs.readFileSync(path.join(root, rel), 'utf8').replace(/^\s*\/\/.*$/gm, '');
  for (const m of text.matchAll(/new URL\(\s*(['"`])([^'"`]+)\1\s*,\s*import\.meta\.url\s*\)/g)) {
    const fromSource = path.resolve(root, path.dirname(rel), m[2]);
    const fromBundle = path.resolve(outdir, m[2]);
    if (fromSource !== fromBundle) {
      problems.push(`${rel}: new URL('${m[2]}', import.meta.url) names ${path.relative(root, fromBundle)} once bundled, not ${path.relative(root, fromSource)} (import a module statically, or keep such paths two levels deep: '../../x')`);
    }
  }
}
if (problems.length > 0) {
  process.stderr.write(`build: the sources cannot be bundled as they are:\n${problems.map((p) => `  ${p}\n`).join('')}`);
  process.exit(1);
}

// A bundled CommonJS package calls require() through esbuild's __require, which finds `require` in the scope of the
// file that defines it (its shared runtime chunk): that file alone gets one (not every file, as a banner would: a
// createRequire costs ~0.1 ms of start-up each).
const REQUIRE_PRELUDE = "import { createRequire as __rzCreateRequire } from 'node:module'; const require = __rzCreateRequire(import.meta.url);\n";
const withRequire = (f) => (f.path.endsWith('.js') && /\bvar __require = .*typeof require !== "undefined"/.test(f.text)
  ? Buffer.concat([Buffer.from(REQUIRE_PRELUDE), f.contents]) : f.contents);

fs.mkdirSync(outdir, { recursive: true });
const written = new Set();
const write = (file, contents) => {
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, contents);
  fs.renameSync(tmp, file);
  written.add(path.basename(file));
};
// The CommonJS bundle first: bin/ringzero takes it only beside a fresh main.js, which is written last.
fs.mkdirSync(cjsOutdir, { recursive: true });
for (const f of cjsResult.outputFiles) {
  const tmp = `${f.path}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, f.contents);
  fs.renameSync(tmp, f.path);
}
// Code caches of an older main.cjs (bin/ringzero names them after the file: its inode, size and mtime).
for (const name of fs.readdirSync(cjsOutdir)) {
  if (/^main\.cjs\..+\.cache$/.test(name)) fs.rmSync(path.join(cjsOutdir, name), { force: true });
}

const entryFiles = new Set(Object.keys(entries).flatMap((n) => [`${n}.js`, `${n}.js.map`]));
const outputs = result.outputFiles;
// Chunks (and maps) first, then the workers, main.js last: it is the file bin/ringzero looks at.
const order = (f) => (path.basename(f.path) === 'main.js' ? 2 : entryFiles.has(path.basename(f.path)) ? 1 : 0);
for (const f of [...outputs].sort((a, b) => order(a) - order(b))) {
  if (path.basename(f.path) === 'main.js') {
    const tmp = `${f.path}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, withRequire(f));
    fs.utimesSync(tmp, started / 1000, started / 1000);
    fs.renameSync(tmp, f.path);
    written.add('main.js');
  } else {
    write(f.path, withRequire(f));
  }
}
// Old chunks stay a day: a process started from the previous bundle (a daemon, a VMM) may still import one lazily.
const DAY_MS = 24 * 3600 * 1000;
for (const name of fs.readdirSync(outdir)) {
  if (written.has(name) || !(name.startsWith('chunk-') || name.endsWith('.tmp'))) continue;
  const file = path.join(outdir, name);
  // A .tmp is another build's file in flight (left over if that build died: removed after ten minutes).
  const age = started - fs.statSync(file, { throwIfNoEntry: false })?.mtimeMs;
  if (age > (name.endsWith('.tmp') ? 600_000 : DAY_MS)) fs.rmSync(file, { force: true });
}

const js = outputs.filter((f) => f.path.endsWith('.js'));
const bytes = js.reduce((n, f) => n + f.contents.length, 0);
log(`${bundled.length} modules into ${js.length} files (${(bytes / 1024).toFixed(0)} KiB) in ${path.relative(root, outdir)}/: entries ${Object.keys(entries).join(', ')} (${Date.now() - started} ms)`);
