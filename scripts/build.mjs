#!/usr/bin/env node
// `npm run build` (also run by `npm ci` / `npm install` as `prepare`): compiles src/ to dist/ with
// tsc (tsconfig.build.json: same strict settings, `.ts` imports rewritten to `.js`), copies the
// files that are not TypeScript (worker scripts, centroids.json) beside them, and records the
// digest of the sources it built from (bin/build-state.mjs), so `tollgate` never runs a stale build.
//   node scripts/build.mjs [--out <dir>]   (default dist; another dir is for tests)
import { spawnSync } from 'node:child_process'
import { cpSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { sourceDigest, STAMP } from '../bin/build-state.mjs'

const root = fileURLToPath(new URL('..', import.meta.url))
const at = process.argv.indexOf('--out')
const out = resolve(root, at > 0 ? process.argv[at + 1] : 'dist')

// The digest first: a source edited while tsc runs then makes the stamp stale, never wrong.
const digest = sourceDigest(root)
let tsc
try {
  tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
} catch {
  // `npm ci --omit=dev` runs `prepare` too, without TypeScript: that install must not fail.
  const prepare = process.env.npm_lifecycle_event === 'prepare'
  process.stderr.write(`build: TypeScript is not installed (a production install?): ${prepare ? 'skipped' : 'nothing built'}; tollgate runs from the sources through tsx\n`)
  process.exit(prepare ? 0 : 1)
}
rmSync(out, { recursive: true, force: true })
const run = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json'), '--outDir', out], { cwd: root, stdio: 'inherit' })
if (run.status !== 0) {
  rmSync(out, { recursive: true, force: true })
  process.stderr.write('build: tsc failed; dist/ removed (tollgate runs from the sources until a build succeeds)\n')
  process.exit(run.status ?? 1)
}
cpSync(join(root, 'src'), out, { recursive: true, filter: (src) => !src.endsWith('.ts') })
writeFileSync(join(out, STAMP), `${JSON.stringify({ digest, builtAt: new Date().toISOString() })}\n`)
