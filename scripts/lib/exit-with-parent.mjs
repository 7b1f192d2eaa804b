// Preloaded (`node --import`) into every instance scripts/lib/instances.ts starts: when the process
// that started it is gone (a test runner or script killed with -9 cannot clean up after itself),
// the instance stops itself — gracefully (SIGTERM: Tollgate finishes in-flight requests), then for
// good after 20 s — instead of living on as an orphan. It touches nothing else.
const parent = process.ppid
const timer = setInterval(() => {
  if (process.ppid === parent) return
  clearInterval(timer)
  process.kill(process.pid, 'SIGTERM')
  setTimeout(() => process.kill(process.pid, 'SIGKILL'), 20_000).unref()
}, 1000)
timer.unref()
