import { randomAlnum } from './crypto.ts'

/** A random public identifier: 17 base62 characters from the OS CSPRNG (101 bits). */
export function newId(): string {
  return randomAlnum(17)
}

/** A request id: `req_` + 101 random bits. Generated here; an inbound id is never trusted or echoed. */
export function newRequestId(): string {
  return `req_${randomAlnum(17)}`
}
