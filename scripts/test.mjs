#!/usr/bin/env node
// `npm test`: every test file under test/, run by node:test through tsx, a few files at a time.
// Services (PostgreSQL, Redis, Chromium) are used when reachable; without them their tests skip
// with the reason printed — except under CI=true, where a missing service fails the test.
// TOLLGATE_TEST_LEVEL=full raises the heavy counts (fuzzing, crash cycles, timing samples).
import { spawn } from 'node:child_process'
import { readdirSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'

const root = new URL('..', import.meta.url).pathname
const only = process.argv.slice(2)

function find(dir) {
  const out = []
  for (const name of readdirSync(dir)) {
    const p = join(dir, name)
    if (statSync(p).isDirectory()) out.push(...find(p))
    else if (name.endsWith('.test.ts')) out.push(relative(root, p))
  }
  return out
}

const files = (only.length > 0 ? only : find(join(root, 'test'))).sort()
const concurrency = process.env.TOLLGATE_TEST_CONCURRENCY ?? '2'
const args = ['--import', 'tsx', '--test', `--test-concurrency=${concurrency}`, '--test-timeout=600000', ...files]
const child = spawn(process.execPath, args, { cwd: root, stdio: 'inherit', env: { ...process.env, TOLLGATE_LOG_LEVEL: 'silent' } })
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)))
