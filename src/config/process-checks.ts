/**
 * D11: Node flags that write process memory (and so request content) to disk: heap snapshots,
 * profiles, reports, and the inspector. The server refuses to start with any of them.
 */
const FORBIDDEN = /^--(heapsnapshot-signal|heapsnapshot-near-heap-limit|heap-prof|cpu-prof|prof|prof-process|inspect|inspect-brk|inspect-wait|inspect-port|debug-port|report-on-signal|report-on-fatalerror|report-uncaught-exception|report-compact|report-dir|report-directory|report-filename|diagnostic-dir)(=|$)/

export function diagnosticFlags(execArgv: readonly string[], nodeOptions: string | undefined): string[] {
  const args = [...execArgv, ...(nodeOptions ?? '').split(/\s+/)].filter((a) => a.length > 0)
  return [...new Set(args.filter((a) => FORBIDDEN.test(a)).map((a) => a.split('=')[0]!))]
}
