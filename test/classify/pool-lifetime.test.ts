import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { test } from 'node:test'
import { promisify } from 'node:util'
import { ROOT } from '../../scripts/lib/instances.ts'

/**
 * GW-3: the embedding pool keeps the process alive exactly while someone waits on it. The child
 * starts a pool and asks it for names and a vector with nothing else holding its event loop (the
 * workers never do): it must print both answers — the loop did not end halfway, as it did for
 * `tollgate classify` under load — and then exit by itself, the idle pool holding nothing.
 * Three runs, as timing varies with how the workers start.
 */
test('GW-3: an embedding pool holds the process while a call waits on it, and releases it when idle', async () => {
  for (let run = 0; run < 3; run++) {
    const started = Date.now()
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'test/classify/pool-lifetime.child.ts'], { cwd: ROOT, timeout: 90_000, maxBuffer: 1 << 20 })
    assert.deepEqual(JSON.parse(stdout.trim()), { people: [[[16, 15]], []], dims: 512 }, `run ${run + 1}: both answers arrived before the process ended`)
    assert.ok(Date.now() - started < 60_000, `run ${run + 1}: the process ended by itself once the pool was idle`)
  }
})
