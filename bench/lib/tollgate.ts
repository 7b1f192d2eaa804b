/**
 * Tollgate as the operator runs it: the real `serve` command in a child process, a fresh data
 * dir, a fixed master key, providers pointed at the mock, every other setting at its default
 * (so every control that is on by default is on: per-request key lookup in the database, info
 * access log on stdout, metrics, decision records durable in SQLite WAL + synchronous=FULL before
 * each answer completes). The org and the production key are created first with the CLI, with
 * the same environment. BENCH_TOLLGATE_ENV="K=V K=V" adds or overrides settings (e.g.
 * TOLLGATE_MODE=production plus what production mode requires).
 */
import { execFile, execFileSync } from 'node:child_process'
import { openSync, closeSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { chooseEntry } from '../../bin/build-state.mjs'
import { BIN } from '../../scripts/lib/instances.ts'
import { MOCK_ANTHROPIC_KEY, MOCK_OPENAI_KEY } from '../mock-upstream.ts'
import { startChild, waitForLine, type Child } from './procs.ts'

export const ROOT = dirname(dirname(dirname(fileURLToPath(import.meta.url))))
/** Fixed so runs are repeatable; only ever used for a throw-away data dir. */
export const BENCH_MASTER_KEY = '0123456789abcdef'.repeat(4)

/**
 * The child's environment: this process's, minus every setting that could point Tollgate
 * elsewhere (TOLLGATE_*, provider keys/URLs) or turn on diagnostics (NODE_OPTIONS), plus ours.
 */
export function tollgateEnv(dataDir: string, mockPort: number, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(TOLLGATE_|ANTHROPIC_|OPENAI_|GEMINI_)/.test(k) || k === 'NODE_OPTIONS') continue
    env[k] = v
  }
  return {
    ...env,
    TOLLGATE_HOST: '127.0.0.1',
    TOLLGATE_PORT: '0',
    TOLLGATE_DATA_DIR: dataDir,
    TOLLGATE_MASTER_KEY: BENCH_MASTER_KEY,
    TOLLGATE_LOG_LEVEL: 'info',
    // Rate limiting stays ON (its cost is part of the hop), with a limit the load never reaches:
    // the bench drives one key at thousands of requests a second.
    TOLLGATE_LIMIT_INTERCEPT_PER_MIN: '1000000',
    ANTHROPIC_API_KEY: MOCK_ANTHROPIC_KEY,
    ANTHROPIC_BASE_URL: `http://127.0.0.1:${mockPort}`,
    OPENAI_API_KEY: MOCK_OPENAI_KEY,
    OPENAI_BASE_URL: `http://127.0.0.1:${mockPort}/v1`,
    ...extraSettings(),
    ...extra,
  }
}

/** BENCH_TOLLGATE_ENV: whitespace-separated NAME=value pairs for Tollgate (TOLLGATE_*, provider settings). */
export function extraSettings(): Record<string, string> {
  const out: Record<string, string> = {}
  for (const pair of (process.env['BENCH_TOLLGATE_ENV'] ?? '').split(/\s+/).filter(Boolean)) {
    const m = /^((?:TOLLGATE|ANTHROPIC|OPENAI|GEMINI)_[A-Z0-9_]+)=(.*)$/.exec(pair)
    if (!m) throw new Error(`BENCH_TOLLGATE_ENV: "${pair}" is not NAME=value with a TOLLGATE_/provider name`)
    out[m[1]!] = m[2]!
  }
  return out
}

const run = promisify(execFile)

/** `tollgate org create <slug>` then `tollgate keys create --org <slug> --env production --json`. */
export async function createKey(env: NodeJS.ProcessEnv, slug: string): Promise<{ id: string; key: string }> {
  const cli = (args: string[]) => run(process.execPath, [BIN, ...args], { cwd: ROOT, env, timeout: 60_000, maxBuffer: 1 << 20 })
    .catch((err: { stderr?: string; message: string }) => {
      throw new Error(`tollgate ${args.slice(0, 2).join(' ')} failed: ${(err.stderr ?? '').trim() || err.message}`)
    })
  await cli(['org', 'create', slug, '--json'])
  const { stdout } = await cli(['keys', 'create', '--org', slug, '--env', 'production', '--label', 'bench', '--json'])
  const j = JSON.parse(stdout.trim().split('\n').pop()!) as { id: string; key: string }
  if (!j.key) throw new Error('keys create printed no key')
  return j
}

export interface RunningTollgate {
  readonly child: Child
  readonly port: number
  readonly logFile: string
}

/**
 * Builds dist/ unless it already holds a build of the current sources (`npm run build`), so the
 * bench measures Tollgate as `npm start` runs it after `npm ci`: compiled, not through tsx.
 */
export function ensureBuild(log: (msg: string) => void): void {
  if (chooseEntry(ROOT) === 'dist') return
  log('building dist/ (npm run build)')
  execFileSync(process.execPath, [join(ROOT, 'scripts', 'build.mjs')], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] })
  if (chooseEntry(ROOT) !== 'dist') throw new Error('dist/ does not match src/ after the build (were sources edited during it?)')
}

/** Starts `node bin/tollgate.mjs serve` (what `npm start` runs); stdout (the JSON log) goes to `logFile`. */
export async function startTollgate(env: NodeJS.ProcessEnv, logFile: string, onStderr: (line: string) => void, nodeFlags: readonly string[] = []): Promise<RunningTollgate> {
  const fd = openSync(logFile, 'a')
  let child: Child
  try {
    child = startChild('tollgate', process.execPath, [...nodeFlags, BIN, 'serve'], { cwd: ROOT, env, stdio: ['ignore', fd, 'pipe'] })
  } finally {
    closeSync(fd)
  }
  const m = await waitForLine(child, child.proc.stderr, /Tollgate listening on https?:\/\/[^\s]*:(\d+)/, 60_000, onStderr)
  // Keep draining stderr (errors, shutdown) so the child never blocks on a full pipe.
  child.proc.stderr!.on('data', () => {})
  return { child, port: Number(m[1]), logFile }
}
