import assert from 'node:assert/strict'
import { test } from 'node:test'
import { cronMatches, latestSlot, parseCron, type Cron } from '../../src/backup/cron.ts'

const at = (iso: string) => Date.parse(iso)
const cron = (expr: string): Cron => {
  const c = parseCron(expr)
  assert.equal(typeof c, 'object', `${expr}: ${String(c)}`)
  return c as Cron
}

test('BACKUP-1: the cron parser reads the standard subset — numbers, *, */n, lists, ranges, stepped ranges — in UTC', () => {
  const daily = cron('0 3 * * *')
  assert.ok(cronMatches(daily, at('2026-03-04T03:00:00Z')))
  assert.ok(cronMatches(daily, at('2026-03-04T03:00:59.999Z')), 'the whole minute matches')
  assert.ok(!cronMatches(daily, at('2026-03-04T03:01:00Z')))
  assert.ok(!cronMatches(daily, at('2026-03-04T04:00:00Z')))

  const every15 = cron('*/15 * * * *')
  assert.deepEqual([0, 15, 30, 45, 5, 59].map((m) => cronMatches(every15, Date.UTC(2026, 0, 1, 7, m))), [true, true, true, true, false, false])
  const list = cron('5,10,50 1-3 * * *')
  assert.ok(cronMatches(list, at('2026-01-01T02:10:00Z')))
  assert.ok(!cronMatches(list, at('2026-01-01T04:10:00Z')))
  const stepped = cron('0 8-18/5 * * *')
  assert.deepEqual([8, 13, 18, 9, 23].map((h) => cronMatches(stepped, Date.UTC(2026, 0, 1, h, 0))), [true, true, true, false, false])
  // Day of week: 0 and 7 are Sunday; 2026-03-01 is a Sunday.
  for (const e of ['30 2 * * 0', '30 2 * * 7', '30 2 * * 6-7']) assert.ok(cronMatches(cron(e), at('2026-03-01T02:30:00Z')), e)
  assert.ok(!cronMatches(cron('30 2 * * 1-5'), at('2026-03-01T02:30:00Z')))
  // Month and day of month.
  assert.ok(cronMatches(cron('0 0 1 1,7 *'), at('2026-07-01T00:00:00Z')))
  assert.ok(!cronMatches(cron('0 0 1 1,7 *'), at('2026-08-01T00:00:00Z')))
  // Both day fields restricted: either matches (Vixie cron). 2026-03-02 is a Monday.
  const either = cron('0 0 15 * 1')
  assert.ok(cronMatches(either, at('2026-03-02T00:00:00Z')), 'a Monday')
  assert.ok(cronMatches(either, at('2026-03-15T00:00:00Z')), 'the 15th (a Sunday)')
  assert.ok(!cronMatches(either, at('2026-03-03T00:00:00Z')))
  // Only the day of month restricted: the weekday does not widen it.
  assert.ok(!cronMatches(cron('0 0 15 * *'), at('2026-03-02T00:00:00Z')))
})

test('BACKUP-1: the cron parser refuses what it does not read, with a sentence saying what is wrong', () => {
  for (const bad of ['', '* * * *', '* * * * * *', '60 * * * *', '* 24 * * *', '* * 0 * *', '* * 32 * *', '* * * 13 *', '* * * * 8', '*/0 * * * *',
    '5-1 * * * *', 'a * * * *', '@daily', '0 3 * * MON', '1,,2 * * * *', '-1 * * * *', '0 3 L * *', '0 3 * * 1#2']) {
    const r = parseCron(bad)
    assert.equal(typeof r, 'string', `${JSON.stringify(bad)} must be refused`)
    assert.ok((r as string).length > 20)
  }
})

test('BACKUP-1: latestSlot finds the latest matching minute in (after, upTo] and nothing twice', () => {
  const c = cron('*/10 * * * *')
  const t0 = at('2026-01-01T00:00:00Z')
  assert.equal(latestSlot(c, t0 - 1, t0 + 5_000), t0, 'the minute it started in counts')
  assert.equal(latestSlot(c, t0 + 5_000, t0 + 25_000), undefined, 'the same minute is not found again')
  assert.equal(latestSlot(c, t0 + 25_000, t0 + 9 * 60_000), undefined)
  assert.equal(latestSlot(c, t0 + 9 * 60_000, t0 + 10 * 60_000 + 1), t0 + 10 * 60_000)
  assert.equal(latestSlot(c, t0, t0 + 35 * 60_000), t0 + 30 * 60_000, 'after a pause, only the latest missed slot runs')
})
