// `tollgate doctor` (D11), run in-process through runCli exactly as main.ts runs it.
import assert from 'node:assert/strict'
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { coreDumpCheck, swapCheck, type DoctorHost, type DoctorReport } from '../../src/cli/doctor.ts'
import { runCli } from '../../src/cli/index.ts'
import { TEST_MASTER_KEY } from '../helpers/app.ts'

async function doctor(t: TestContext, env: Record<string, string>, ...args: string[]) {
  const cwd = mkdtempSync(join(tmpdir(), 'tollgate-doctor-'))
  t.after(() => rmSync(cwd, { recursive: true, force: true }))
  const out: string[] = []
  const err: string[] = []
  const code = await runCli(['doctor', ...args], { env: { TOLLGATE_LOG_LEVEL: 'silent', ...env }, execArgv: [], cwd }, { out: (s) => out.push(s), err: (s) => err.push(s) })
  return { code, out: out.join('\n'), err: err.join('\n') }
}

function dataDir(t: TestContext, mode: number): string {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-doctor-data-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  chmodSync(dir, mode)
  return dir
}

const line = (out: string, id: string) => out.split('\n').find((l) => new RegExp(`^(ok|warn|fail)\\s+${id}\\s`).test(l))

test('TRUST-1 TRANSIT-1: tollgate doctor fails a world-readable data dir and passes a 0700 one (D11), one line per check with a fix', async (t) => {
  const open = dataDir(t, 0o755)
  const r = await doctor(t, { TOLLGATE_DATA_DIR: open, TOLLGATE_MASTER_KEY: TEST_MASTER_KEY })
  assert.equal(r.code, 1, r.out)
  const bad = line(r.out, 'data_dir')
  assert.ok(bad, r.out)
  assert.match(bad, /^fail\s+data_dir\s+.*open to every user on the host \(mode 0755\) — fix: chmod 700 /)

  const closed = dataDir(t, 0o700)
  const good = await doctor(t, { TOLLGATE_DATA_DIR: closed, TOLLGATE_MASTER_KEY: TEST_MASTER_KEY })
  assert.match(line(good.out, 'data_dir') ?? '', /^ok\s+data_dir\s+.*private to its owner \(mode 0700\)/)
  // Nothing else on this host fails for a development setup (warnings such as swap or core dumps may show).
  assert.equal(good.out.split('\n').filter((l) => l.startsWith('fail')).length, 0, good.out)
  assert.equal(good.code, 0, good.out)
  for (const id of ['core_dumps', 'diagnostic_flags', 'swap', 'data_dir', 'master_key', 'tls', 'proxy_buffering']) assert.ok(line(good.out, id), `a line for ${id}:\n${good.out}`)
  for (const l of good.out.split('\n')) if (/^(warn|fail)/.test(l)) assert.match(l, / — fix: /, 'every warning says how to fix it')

  // Group-readable is a warning; a readable master key file is a failure.
  const group = dataDir(t, 0o750)
  writeFileSync(join(group, 'master.key'), 'x', { mode: 0o644 })
  chmodSync(join(group, 'master.key'), 0o644)
  const g = await doctor(t, { TOLLGATE_DATA_DIR: group })
  assert.match(line(g.out, 'data_dir') ?? '', /^warn\s+data_dir\s+.*open to its group/)
  assert.match(g.out, /^fail\s+data_dir\s+master\.key in the data dir is readable by others \(mode 0644\)/m)
  assert.equal(g.code, 1)
})

test('TRUST-1 TRANSIT-1: tollgate doctor fails a diagnostic flag in NODE_OPTIONS (D11) and --json prints one object', async (t) => {
  const dir = dataDir(t, 0o700)
  const r = await doctor(t, { TOLLGATE_DATA_DIR: dir, NODE_OPTIONS: '--max-old-space-size=512 --heapsnapshot-signal=SIGUSR2' })
  assert.equal(r.code, 1)
  assert.match(line(r.out, 'diagnostic_flags') ?? '', /^fail\s+diagnostic_flags\s+--heapsnapshot-signal would write process memory to disk.* — fix: remove them from NODE_OPTIONS/)

  const j = await doctor(t, { TOLLGATE_DATA_DIR: dir, NODE_OPTIONS: '--cpu-prof' }, '--json')
  assert.equal(j.code, 1)
  assert.equal(j.out.split('\n').length, 1, 'one JSON object on one line')
  const report = JSON.parse(j.out) as DoctorReport
  assert.equal(report.status, 'fail')
  const flags = report.checks.find((c) => c.id === 'diagnostic_flags')!
  assert.equal(flags.status, 'fail')
  assert.match(flags.message, /--cpu-prof/)
  assert.ok(flags.fix)

  const clean = await doctor(t, { TOLLGATE_DATA_DIR: dir, NODE_OPTIONS: '--max-old-space-size=512' }, '--json')
  assert.equal((JSON.parse(clean.out) as DoctorReport).checks.find((c) => c.id === 'diagnostic_flags')!.status, 'ok')
  assert.equal(clean.code, 0, clean.out)
})

test('TRUST-1: tollgate doctor checks the master key in production, TLS or a trusted proxy, proxy buffering, and survives a bad configuration', async (t) => {
  const dir = dataDir(t, 0o700)
  const prod = { TOLLGATE_DATA_DIR: dir, TOLLGATE_MODE: 'production', TOLLGATE_MASTER_KEY: TEST_MASTER_KEY, TOLLGATE_SMTP_URL: 'smtps://mail.example.test' }
  const plain = await doctor(t, prod)
  assert.match(line(plain.out, 'tls') ?? '', /^fail\s+tls\s+no TLS.* — fix: /)
  assert.match(line(plain.out, 'master_key') ?? '', /^ok\s+master_key/)
  assert.equal(plain.code, 1)
  const proxied = await doctor(t, { ...prod, TOLLGATE_PUBLIC_URL: 'https://gate.example.test', TOLLGATE_TRUSTED_PROXIES: '10.0.0.0/8' })
  assert.match(line(proxied.out, 'tls') ?? '', /^ok\s+tls\s+TLS is expected at a reverse proxy/)
  assert.match(line(proxied.out, 'proxy_buffering') ?? '', /^warn\s+proxy_buffering\s+.*— fix: nginx: proxy_request_buffering off; proxy_buffering off/)
  assert.equal(proxied.out.includes(TEST_MASTER_KEY), false, 'doctor never prints a secret')
  // Production without a master key does not load: doctor still runs the host checks and fails.
  const broken = await doctor(t, { TOLLGATE_DATA_DIR: dir, TOLLGATE_MODE: 'production', TOLLGATE_MASTER_KEY: 'not-a-key-PLANT' })
  assert.equal(broken.code, 1)
  assert.match(line(broken.out, 'config') ?? '', /^fail\s+config\s+the configuration has \d problem/)
  assert.ok(line(broken.out, 'data_dir') && line(broken.out, 'core_dumps'))
  assert.equal(broken.out.includes('not-a-key-PLANT'), false)
})

test('TRUST-1 TRANSIT-1: core dump and swap checks read /proc (RLIMIT_CORE, /proc/swaps, /proc/meminfo)', () => {
  const host = (files: Record<string, string>, shell?: string): DoctorHost => ({ readText: (p) => files[p], mode: () => undefined, shellCoreLimit: () => shell })
  const limits = (soft: string) => `Limit                     Soft Limit           Hard Limit           Units\nMax cpu time              unlimited            unlimited            seconds\nMax core file size        ${soft}                    unlimited            bytes\n`
  assert.equal(coreDumpCheck(host({ '/proc/self/limits': limits('0') })).status, 'ok')
  const on = coreDumpCheck(host({ '/proc/self/limits': limits('unlimited'), '/proc/sys/kernel/core_pattern': '|/usr/lib/systemd/systemd-coredump %P' }))
  assert.equal(on.status, 'warn')
  assert.match(on.message, /RLIMIT_CORE unlimited, core_pattern \|\/usr\/lib\/systemd/)
  assert.match(on.fix ?? '', /ulimit -c 0.*LimitCORE=0/)
  assert.equal(coreDumpCheck(host({}, '0')).status, 'ok', 'falls back to ulimit -c in a shell')
  assert.equal(coreDumpCheck(host({}, 'unlimited')).status, 'warn')
  assert.equal(coreDumpCheck(host({})).status, 'warn', 'unknown is not ok')

  const header = 'Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n'
  assert.equal(swapCheck(host({ '/proc/swaps': header })).status, 'ok')
  assert.equal(swapCheck(host({ '/proc/swaps': `${header}/dev/zram0  partition  4194300  1024  100\n` })).status, 'ok')
  const disk = swapCheck(host({ '/proc/swaps': `${header}/swapfile  file  2097148  52344  -2\n` }))
  assert.equal(disk.status, 'warn')
  assert.match(disk.message, /\/swapfile \(52344 kB in use\)/)
  assert.match(disk.fix ?? '', /swapoff -a/)
  assert.equal(swapCheck(host({ '/proc/meminfo': 'MemTotal: 100 kB\nSwapTotal:        0 kB\nSwapFree:         0 kB\n' })).status, 'ok')
  assert.equal(swapCheck(host({ '/proc/meminfo': 'SwapTotal:     2048 kB\nSwapFree:      1024 kB\n' })).status, 'warn')
})
