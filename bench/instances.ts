/**
 * Several instances: req/s of ONE Tollgate instance vs TWO, both on one PostgreSQL database and
 * one Redis (decision records durable in PostgreSQL before each answer, rate limits exact in
 * Redis), OpenAI-format JSON at BENCH_CONNS (50) connections.
 *
 *   node --import tsx bench/instances.ts
 *
 * Starts (127.0.0.1 only) the mock upstream (bench/mock-upstream.ts), a fresh PostgreSQL database,
 * the org and key with the CLI, and BENCH_INSTANCES (2) `serve` processes (scripts/lib/instances.ts) running
 * the compiled build, as `npm start` does (`npm run build` first when dist/ is missing or stale).
 * Then, interleaved BENCH_REPS times (order rotated): "1 instance" = one wrk with BENCH_CONNS
 * connections against instance A (B idles); "2 instances" = wrk against each instance at the same
 * time, BENCH_CONNS / 2 connections each (a load balancer's round-robin, without a balancer's own
 * cost). Per run: req/s, p50/p99, errors; CPU (% of one core) of each instance, the mock, the load
 * generator(s), PostgreSQL + Redis (all their processes: shared with anything else using them) and
 * the machine. Prints a markdown table and the ratio, writes bench/results/instances-<timestamp>.json,
 * stops everything it started (also on Ctrl-C), drops the database, exits 0.
 *
 * Knobs: BENCH_DURATION=10 BENCH_REPS=3 BENCH_WARMUP=3 BENCH_CONNS=50 BENCH_INSTANCES=2
 *   BENCH_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres (admin connection: creates/drops the database)
 *   BENCH_REDIS_URL=redis://127.0.0.1:6379 BENCH_LOADGEN=wrk|autocannon BENCH_KEEP=1 (keep the temp dir and database)
 *   BENCH_TOLLGATE_ENV="NAME=value …" (extra Tollgate settings)
 */
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { BIN, instanceEnv, instanceName, startInstance, type Instance } from '../scripts/lib/instances.ts'
import { writeBodies } from './lib/bodies.ts'
import { pickLoadGen, runLoad, type LoadResult } from './lib/load.ts'
import { installCleanup, machineTicks, processTree, selfTicks, startChild, stopAll, treeTicks, waitForLine, CLK_TCK, type Child } from './lib/procs.ts'
import { BENCH_MASTER_KEY, createKey, ensureBuild, extraSettings, ROOT } from './lib/tollgate.ts'
import { MOCK_OPENAI_KEY } from './mock-upstream.ts'

function int(name: string, def: number, min: number, max: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return def
  const n = Number(raw)
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name} must be an integer from ${min} to ${max}`)
  return n
}
const DURATION = int('BENCH_DURATION', 10, 2, 300)
const REPS = int('BENCH_REPS', 3, 1, 20)
const WARMUP = int('BENCH_WARMUP', 3, 0, 60)
const CONNS = int('BENCH_CONNS', 50, 2, 1000)
const COUNT = int('BENCH_INSTANCES', 2, 2, 8)
const PG_ADMIN = process.env['BENCH_POSTGRES_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres'
const REDIS_URL = process.env['BENCH_REDIS_URL'] ?? 'redis://127.0.0.1:6379'
const KEEP = process.env['BENCH_KEEP'] === '1'
for (const u of [PG_ADMIN, REDIS_URL]) {
  if (!['127.0.0.1', 'localhost', '[::1]'].includes(new URL(u).hostname)) throw new Error(`the bench runs on loopback only: ${new URL(u).hostname} is not`)
}

const log = (msg: string) => process.stderr.write(`[bench-instances ${new Date().toISOString().slice(11, 19)}] ${msg}\n`)
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const median = (xs: readonly number[]) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? NaN : s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}

let workDir: string | undefined
let instances: Instance[] = []
let dbName: string | undefined
async function dropDatabase(): Promise<void> {
  if (!dbName || KEEP) return
  const c = new pg.Client({ connectionString: PG_ADMIN })
  await c.connect()
  await c.query(`drop database if exists ${dbName} with (force)`)
  await c.end()
  dbName = undefined
}
installCleanup(async () => {
  await Promise.all(instances.map((i) => i.stop(10_000)))
  await dropDatabase().catch(() => undefined)
  if (workDir && !KEEP) rmSync(workDir, { recursive: true, force: true })
})

/** PIDs of the shared services (postmaster tree, redis-server), for their CPU; empty when not found. */
function servicePids(): { postgres: number[]; redis: number[] } {
  const byName = (re: RegExp) => {
    const out: number[] = []
    for (const d of readdirSync('/proc')) {
      if (!/^\d+$/.test(d)) continue
      try {
        if (re.test(readFileSync(`/proc/${d}/comm`, 'utf8').trim())) out.push(Number(d))
      } catch {
        // gone
      }
    }
    return out
  }
  return { postgres: byName(/^postgres$/), redis: byName(/^redis-server$/) }
}

interface Run {
  readonly rep: number
  readonly setup: '1 instance' | `${number} instances`
  readonly rps: number
  readonly requests: number
  readonly p50Ms: number
  readonly p99Ms: number
  readonly errors: number
  readonly non2xx: number
  /** CPU, % of one core, over the run. */
  readonly cpu: {
    readonly instances: readonly number[]; readonly mock: number; readonly loadgen: number; readonly postgres: number; readonly redis: number; readonly machineBusy: number; readonly steal: number
    /** CPU of everything else on the machine (other work; PostgreSQL/Redis serving other clients count as ours). */
    other: number
  }
}

async function quiesce(pids: () => number[]): Promise<void> {
  for (let i = 0; i < 33; i++) {
    const a = treeTicks(pids())
    await sleep(300)
    if (treeTicks(pids()) - a <= 1) return
  }
  log('  (servers still busy after 10 s; measuring anyway)')
}

async function main(): Promise<void> {
  const gen = pickLoadGen(process.env['BENCH_LOADGEN'])
  log(`load generator: ${gen.name} ${gen.version}; ${cpus().length} CPUs; plan: ${REPS} reps × (1 instance, ${COUNT} instances) × ${DURATION}s, JSON at ${CONNS} connections`)
  // The instances run the compiled build, as `npm start` does (built first when dist/ is missing or stale).
  ensureBuild(log)
  workDir = mkdtempSync(join(tmpdir(), 'tollgate-bench-instances-'))
  const bodies = writeBodies(workDir)

  // 1. mock upstream (own process: its CPU is measured apart)
  const mock: Child = startChild('mock', process.execPath, ['--import', 'tsx', join(ROOT, 'bench', 'mock-upstream.ts')], { cwd: ROOT, env: { ...process.env, MOCK_HOST: '127.0.0.1', MOCK_PORT: '0' }, stdio: ['ignore', 'pipe', 'inherit'] })
  const mockPort = Number((await waitForLine(mock, mock.proc.stdout, /"mock":\{"port":(\d+)\}/, 30_000))[1])
  mock.proc.stdout!.resume()
  log(`mock upstream on 127.0.0.1:${mockPort}`)

  // 2. a fresh database; the org and key with the CLI (which also migrates)
  dbName = `tollgate_bench_${randomBytes(5).toString('hex')}`
  const admin = new pg.Client({ connectionString: PG_ADMIN })
  await admin.connect()
  await admin.query(`create database ${dbName}`)
  await admin.end()
  const dbUrl = new URL(PG_ADMIN)
  dbUrl.pathname = `/${dbName}`
  const settings: Record<string, string> = {
    TOLLGATE_HOST: '127.0.0.1', TOLLGATE_PORT: '0',
    TOLLGATE_DATA_DIR: join(workDir, 'data'),
    TOLLGATE_MASTER_KEY: BENCH_MASTER_KEY,
    TOLLGATE_DATABASE_URL: dbUrl.toString(),
    TOLLGATE_REDIS_URL: REDIS_URL,
    TOLLGATE_LOG_LEVEL: 'info',
    // The bench measures throughput, not the limiter's refusals: limits high, still counted exactly in Redis.
    TOLLGATE_LIMIT_INTERCEPT_PER_MIN: '1000000', TOLLGATE_LIMIT_API_PER_MIN: '1000000',
    OPENAI_API_KEY: MOCK_OPENAI_KEY, OPENAI_BASE_URL: `http://127.0.0.1:${mockPort}/v1`,
    ...extraSettings(),
  }
  const env = instanceEnv(settings)
  const key = await createKey(env, 'bench')
  log(`database ${dbName}; org "bench" and production key ${key.id} created with the CLI`)

  // 3. the instances, all at once
  mkdirSync(join(workDir, 'logs'), { recursive: true })
  instances = await Promise.all(Array.from({ length: COUNT }, (_, i) => startInstance({
    name: instanceName(i), env, stdout: { file: join(workDir!, 'logs', `${instanceName(i)}.log`) }, readyTimeoutMs: 120_000, entry: BIN,
  })))
  log(`instances: ${instances.map((i) => `${i.name} ${i.url} (pid ${i.pid})`).join(', ')}`)
  const headers = { authorization: `Bearer ${key.key}` }
  const path = '/v1/chat/completions'
  const allPids = () => [mock.pid, ...instances.map((i) => i.pid)].flatMap((p) => processTree(p))

  // 4. warm-up: every instance answers one request (its classifier model has loaded), then load (JIT warms)
  const body = readFileSync(bodies['openai-json'])
  for (const inst of instances) {
    const t0 = performance.now()
    for (let ok = false; !ok;) {
      if (performance.now() - t0 > 180_000) throw new Error(`${inst.name} answered no request within 180 s`)
      const r = await fetch(inst.url + path, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body, signal: AbortSignal.timeout(60_000) }).catch(() => undefined)
      ok = r?.status === 200
      await r?.arrayBuffer()
      if (!ok) await sleep(500)
    }
    log(`${inst.name} answered its first request ${Math.round(performance.now() - t0)} ms after the probe started`)
  }
  for (const inst of instances) {
    const r = await runLoad(gen, { url: inst.url + path, bodyFile: bodies['openai-json'], headers, connections: 16, durationS: Math.max(WARMUP, 1) })
    log(`warm-up ${inst.name}: ${Math.round(r.rps)} req/s${r.non2xx + r.errors > 0 ? ` (${r.non2xx} non-2xx, ${r.errors} errors)` : ''}`)
  }

  // 5. measured runs, interleaved
  const runs: Run[] = []
  const measure = async (rep: number, targets: Instance[]): Promise<Run> => {
    await quiesce(allPids)
    const svc = servicePids()
    const instTrees = instances.map((i) => processTree(i.pid))
    const before = { inst: instTrees.map(treeTicks), mock: treeTicks(processTree(mock.pid)), self: selfTicks(), pg: treeTicks(svc.postgres), redis: treeTicks(svc.redis), machine: machineTicks(), wall: performance.now() }
    const per = Math.floor(CONNS / targets.length)
    const results: LoadResult[] = await Promise.all(targets.map((t, i) => runLoad(gen, {
      url: t.url + path, bodyFile: bodies['openai-json'], headers, connections: i === 0 ? CONNS - per * (targets.length - 1) : per, durationS: DURATION,
    })))
    const core = ((performance.now() - before.wall) / 1000) * CLK_TCK
    const m = machineTicks()
    const dTotal = m.total - before.machine.total
    const pct = (ticks: number) => (ticks / core) * 100
    // This process's own ticks include the load generators it reaped (utime+stime+cutime+cstime).
    const run: Run = {
      rep, setup: targets.length === 1 ? '1 instance' : `${targets.length} instances`,
      rps: results.reduce((n, r) => n + r.rps, 0),
      requests: results.reduce((n, r) => n + r.requests, 0),
      p50Ms: median(results.map((r) => r.p50Ms)),
      p99Ms: Math.max(...results.map((r) => r.p99Ms)),
      errors: results.reduce((n, r) => n + r.errors, 0),
      non2xx: results.reduce((n, r) => n + r.non2xx, 0),
      cpu: {
        instances: instTrees.map((tree, i) => pct(treeTicks(tree) - before.inst[i]!)),
        mock: pct(treeTicks(processTree(mock.pid)) - before.mock),
        loadgen: pct(selfTicks() - before.self),
        postgres: pct(treeTicks(svc.postgres) - before.pg),
        redis: pct(treeTicks(svc.redis) - before.redis),
        machineBusy: dTotal > 0 ? ((m.busy - before.machine.busy) / dTotal) * 100 * cpus().length : NaN,
        other: 0,
        steal: dTotal > 0 ? ((m.steal - before.machine.steal) / dTotal) * 100 : NaN,
      },
    }
    run.cpu.other = Math.max(0, run.cpu.machineBusy - run.cpu.instances.reduce((a, b) => a + b, 0) - run.cpu.mock - run.cpu.loadgen - run.cpu.postgres - run.cpu.redis)
    log(`rep ${rep} ${run.setup.padEnd(11)} ${Math.round(run.rps)} req/s, p50 ${run.p50Ms.toFixed(1)} ms, p99 ${run.p99Ms.toFixed(1)} ms${run.errors + run.non2xx > 0 ? `, ${run.errors} errors, ${run.non2xx} non-2xx` : ''}; CPU % of a core: ${run.cpu.instances.map((c, i) => `${instances[i]!.name} ${c.toFixed(0)}`).join(', ')}, mock ${run.cpu.mock.toFixed(0)}, wrk+bench ${run.cpu.loadgen.toFixed(0)}, postgres ${run.cpu.postgres.toFixed(0)}, redis ${run.cpu.redis.toFixed(0)}; machine ${run.cpu.machineBusy.toFixed(0)} of ${cpus().length * 100} (other processes ${run.cpu.other.toFixed(0)}, steal ${run.cpu.steal.toFixed(1)}%)`)
    return run
  }
  for (let rep = 1; rep <= REPS; rep++) {
    const order = rep % 2 === 1 ? ['one', 'all'] : ['all', 'one']
    for (const o of order) runs.push(await measure(rep, o === 'one' ? [instances[0]!] : instances))
  }

  // 6. stop gracefully; count the decisions PostgreSQL holds
  const exits = await Promise.all(instances.map((i) => i.stop(30_000)))
  instances = []
  const c = new pg.Client({ connectionString: dbUrl.toString() })
  await c.connect()
  const decisions = Number((await c.query('select count(*)::int as n from decision')).rows[0].n)
  await c.end()

  // 7. report
  const one = runs.filter((r) => r.setup === '1 instance')
  const two = runs.filter((r) => r.setup !== '1 instance')
  const row = (label: string, rs: Run[]) => {
    const cpuInst = rs.map((r) => r.cpu.instances.slice(0, label.startsWith('1') ? 1 : COUNT).reduce((a, b) => a + b, 0))
    return `| ${label} | ${Math.round(median(rs.map((r) => r.rps)))} | ${rs.map((r) => Math.round(r.rps)).join(' / ')} | ${median(rs.map((r) => r.p50Ms)).toFixed(1)} | ${median(rs.map((r) => r.p99Ms)).toFixed(1)} | ` +
      `${Math.round(median(cpuInst))} | ${Math.round(median(rs.map((r) => r.cpu.mock)))} | ${Math.round(median(rs.map((r) => r.cpu.loadgen)))} | ${Math.round(median(rs.map((r) => r.cpu.postgres)))} | ${Math.round(median(rs.map((r) => r.cpu.redis)))} | ${Math.round(median(rs.map((r) => r.cpu.machineBusy)))} / ${cpus().length * 100} | ${Math.round(median(rs.map((r) => r.cpu.other)))} | ${rs.reduce((n, r) => n + r.errors + r.non2xx, 0)} |`
  }
  const ratio = median(two.map((r) => r.rps)) / median(one.map((r) => r.rps))
  const oneBusy = median(one.map((r) => r.cpu.machineBusy))
  const out = [
    '',
    `## Several instances on one PostgreSQL + one Redis (JSON, ${CONNS} connections, ${gen.name}, ${DURATION}s × ${REPS})`,
    '',
    '| setup | req/s (median) | runs | p50 ms | p99 ms | Tollgate CPU % | mock % | load gen % | postgres % | redis % | machine busy % | other processes % | errors |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    row('1 instance', one),
    row(`${COUNT} instances`, two),
    '',
    `Ratio ${COUNT} instances / 1 instance: **${ratio.toFixed(2)}×** (target ≥ 1.6× where the machine allows: ${ratio >= 1.6 ? 'PASS' : 'MISS'}).`,
    `CPU columns are % of one core over each run; the machine has ${cpus().length} cores (${cpus().length * 100}%). One instance already keeps the machine ${Math.round(oneBusy)}% busy` +
      ` — with everything (the instances, the mock, the load generator, PostgreSQL and Redis) on the same ${cpus().length} cores, a second instance can only add what is left.`,
    `Graceful stop exits: ${exits.map((e) => e.code ?? e.signal).join(', ')}; decision records in PostgreSQL: ${decisions} (every answered request, warm-up included).`,
  ].join('\n')
  process.stdout.write(`${out}\n`)
  mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true })
  const file = join(ROOT, 'bench', 'results', `instances-${new Date().toISOString().replace(/[:.]/g, '-')}.json`)
  writeFileSync(file, JSON.stringify({ startedAt: new Date().toISOString(), cpus: cpus().length, loadgen: gen, duration: DURATION, reps: REPS, conns: CONNS, instances: COUNT, ratio, decisions, runs, markdown: out }, null, 2))
  log(`results written to ${file}`)
}

try {
  await main()
} finally {
  await Promise.all(instances.map((i) => i.stop(10_000)))
  await stopAll()
  await dropDatabase().catch((err: unknown) => log(`could not drop ${dbName}: ${(err as Error).message}`))
  if (workDir && !KEEP) rmSync(workDir, { recursive: true, force: true })
}
