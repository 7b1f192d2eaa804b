import { isIPv4, isIPv6 } from 'node:net'

/** D15: an address at rest is truncated — IPv4 to its /24, IPv6 to its /48. Raw addresses live only in memory. */
export function truncateIp(ip: string): string {
  const v4 = ip.startsWith('::ffff:') && isIPv4(ip.slice(7)) ? ip.slice(7) : ip
  if (isIPv4(v4)) return `${v4.split('.').slice(0, 3).join('.')}.0/24`
  if (isIPv6(ip)) {
    const full = expand(ip)
    return `${full.slice(0, 3).join(':')}::/48`
  }
  return 'unknown'
}

function expand(ip: string): string[] {
  const [head, tail] = ip.split('::') as [string, string | undefined]
  const h = head ? head.split(':') : []
  const t = tail ? tail.split(':') : []
  return [...h, ...Array(8 - h.length - t.length).fill('0'), ...t].map((x) => x.replace(/^0+(?=.)/, ''))
}
