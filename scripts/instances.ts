/**
 * `npm run instances -- [options]`: N Tollgate instances (default 2) on loopback ports, sharing one
 * PostgreSQL database and one Redis, for trying a several-instance setup and for tests.
 *
 *   --count N              instances (default 2; TOLLGATE_INSTANCES)
 *   --database-url URL     postgres://… (default: TOLLGATE_DATABASE_URL)
 *   --redis-url URL        redis://…    (default: TOLLGATE_REDIS_URL)
 *   --master-key HEX       the same on every instance (default: TOLLGATE_MASTER_KEY)
 *   --ports P1,P2,…        one per instance (default: --base-port, --base-port+1, …)
 *   --base-port P          default 8787 (0: a free port for each)
 *   --log-dir DIR          each instance's JSON log to DIR/<name>.log (default: discarded)
 *   --json                 print one JSON line {"instances":[{"name","url","pid"}]} once all listen
 *
 * Every other TOLLGATE_* variable in the environment (limits, providers, …) is passed to every
 * instance; provider variables (ANTHROPIC_*, OPENAI_*, GEMINI_*) too. The schema is migrated once
 * (`tollgate migrate`), then all instances start together. SIGINT/SIGTERM is forwarded: each
 * instance finishes its in-flight requests and exits; the script exits 0 when all exited cleanly.
 * If an instance dies on its own, the others are stopped and the script exits 1.
 */
import { mkdirSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { BIN, freePort, startSeveral, type Instance } from './lib/instances.ts'

const USAGE = 'usage: npm run instances -- --database-url postgres://… --redis-url redis://… --master-key <64 hex> [--count 2] [--ports 8787,8788 | --base-port 8787] [--log-dir DIR] [--json]'

function fail(msg: string): never {
  process.stderr.write(`instances: ${msg}\n${USAGE}\n`)
  process.exit(2)
}

const { values } = (() => {
  try {
    return parseArgs({
      options: {
        count: { type: 'string' }, 'database-url': { type: 'string' }, 'redis-url': { type: 'string' }, 'master-key': { type: 'string' },
        ports: { type: 'string' }, 'base-port': { type: 'string' }, 'log-dir': { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    })
  } catch (err) {
    return fail((err as Error).message)
  }
})()
if (values.help) {
  process.stdout.write(`${USAGE}\n`)
  process.exit(0)
}

const env = process.env
const count = Number(values.count ?? env['TOLLGATE_INSTANCES'] ?? 2)
if (!Number.isInteger(count) || count < 1 || count > 16) fail('--count is a whole number from 1 to 16')
const databaseUrl = values['database-url'] ?? env['TOLLGATE_DATABASE_URL']
if (!databaseUrl || !/^postgres(ql)?:\/\//.test(databaseUrl)) fail('several instances share one PostgreSQL database: give --database-url postgres://… (or TOLLGATE_DATABASE_URL)')
const redisUrl = values['redis-url'] ?? env['TOLLGATE_REDIS_URL']
if (!redisUrl || !/^rediss?:\/\//.test(redisUrl)) fail('several instances share one Redis: give --redis-url redis://… (or TOLLGATE_REDIS_URL)')
const masterKey = values['master-key'] ?? env['TOLLGATE_MASTER_KEY']
if (!masterKey || !/^[0-9a-fA-F]{64}$/.test(masterKey)) fail('every instance needs the same master key: give --master-key (64 hex digits; openssl rand -hex 32) or TOLLGATE_MASTER_KEY')
const basePort = Number(values['base-port'] ?? 8787)
if (!Number.isInteger(basePort) || basePort < 0 || basePort > 65535 - count) fail('--base-port is a port number')
// --base-port 0: free ports chosen now, so each instance's origin (links, redirect URIs, WebAuthn) names its real port.
const ports = values.ports !== undefined ? values.ports.split(',').map(Number) : await Promise.all(Array.from({ length: count }, (_, i) => (basePort === 0 ? freePort() : basePort + i)))
if (ports.length !== count || ports.some((p) => !Number.isInteger(p) || p < 0 || p > 65535)) fail(`--ports needs ${count} port numbers`)
const logDir = values['log-dir'] === undefined ? undefined : resolve(values['log-dir'])
if (logDir) mkdirSync(logDir, { recursive: true })

// Settings passed through to every instance (the ones this script sets win).
const own = new Set(['TOLLGATE_HOST', 'TOLLGATE_PORT', 'TOLLGATE_DATABASE_URL', 'TOLLGATE_REDIS_URL', 'TOLLGATE_MASTER_KEY', 'TOLLGATE_INSTANCES'])
const settings: Record<string, string> = {}
for (const [k, v] of Object.entries(env)) if (v !== undefined && /^(TOLLGATE_|ANTHROPIC_|OPENAI_|GEMINI_)/.test(k) && !own.has(k)) settings[k] = v

let instances: Instance[] = []
let stopping = false
async function stopAll(code: number): Promise<never> {
  stopping = true
  const exits = await Promise.all(instances.map((i) => i.stop()))
  const clean = exits.every((e) => e.code === 0)
  process.exit(code !== 0 ? code : clean ? 0 : 1)
}
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (stopping) {
      for (const i of instances) i.signal('SIGKILL')
      process.exit(1)
    }
    process.stderr.write(`instances: ${sig}: stopping ${instances.length} instance(s) gracefully…\n`)
    void stopAll(0)
  })
}

try {
  instances = await startSeveral({
    count, ports, databaseUrl: databaseUrl!, redisUrl: redisUrl!, masterKey: masterKey!, settings,
    // What `npm start` runs: the compiled build when it is current (~100 MB less per instance than tsx).
    entry: BIN,
    ...(logDir ? { stdout: (name: string) => ({ file: join(logDir, `${name}.log`) }) } : {}),
    onStderr: (name, line) => process.stderr.write(`[${name}] ${line}\n`),
  })
} catch (err) {
  process.stderr.write(`instances: ${(err as Error).message}\n`)
  process.exit(1)
}

if (values.json) process.stdout.write(`${JSON.stringify({ instances: instances.map((i) => ({ name: i.name, url: i.url, pid: i.pid })) })}\n`)
else {
  process.stdout.write(`${count} Tollgate instance(s) on one PostgreSQL database and one Redis:\n`)
  for (const i of instances) process.stdout.write(`  ${i.name}  ${i.url}  (pid ${i.pid})\n`)
  process.stdout.write(`Keys: npx tollgate keys create --org <slug> --env production   (with the same TOLLGATE_DATABASE_URL and TOLLGATE_MASTER_KEY)\nCtrl-C stops them all gracefully.\n`)
}
for (const i of instances) {
  void i.exited.then((e) => {
    if (stopping) return
    process.stderr.write(`instances: ${i.name} exited on its own (${e.code ?? e.signal}); stopping the others\n`)
    void stopAll(1)
  })
}
