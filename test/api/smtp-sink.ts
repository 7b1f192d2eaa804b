import type { AddressInfo } from 'node:net'
import { simpleParser, type ParsedMail } from 'mailparser'
import { SMTPServer } from 'smtp-server'

/**
 * A real SMTP server on 127.0.0.1:<random> that keeps every message it receives, parsed. No TLS
 * and no AUTH are offered, so a client speaks plain SMTP to it (loopback only).
 */
export interface SmtpSink {
  readonly url: string
  readonly messages: ParsedMail[]
  /** Resolves with the `n`th message (1-based) once it has arrived. */
  message(n: number, timeoutMs?: number): Promise<ParsedMail>
  close(): Promise<void>
}

export async function startSmtpSink(): Promise<SmtpSink> {
  const messages: ParsedMail[] = []
  const waiters: Array<() => void> = []
  const server = new SMTPServer({
    disabledCommands: ['AUTH', 'STARTTLS'],
    authOptional: true,
    logger: false,
    onData(stream, _session, callback) {
      simpleParser(stream).then((mail) => {
        messages.push(mail)
        for (const w of waiters.splice(0)) w()
        callback()
      }, (err: Error) => callback(err))
    },
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()))
  const { port } = server.server.address() as AddressInfo
  return {
    url: `smtp://127.0.0.1:${port}`,
    messages,
    async message(n, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs
      while (messages.length < n) {
        if (Date.now() > deadline) throw new Error(`SMTP sink: message ${n} never arrived (${messages.length} received)`)
        await new Promise<void>((resolve) => {
          waiters.push(resolve)
          setTimeout(resolve, 100)
        })
      }
      return messages[n - 1]!
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }
}
