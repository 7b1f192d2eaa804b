import { createRequire } from 'node:module'
import type { Transporter } from 'nodemailer'

// nodemailer is loaded only when SMTP is configured.
const require = createRequire(import.meta.url)
import type { Logger } from '../observe/log.ts'

export interface Mail {
  readonly to: string
  readonly subject: string
  readonly text: string
}

/** Sends transactional mail (invites). Never carries request content. */
export interface MailTransport {
  readonly kind: 'smtp' | 'outbox'
  send(message: Mail): Promise<void>
}

/** SMTP through nodemailer (`TOLLGATE_SMTP_URL`, e.g. smtps://user:pass@smtp.example.com:465). */
export class SmtpTransport implements MailTransport {
  readonly kind = 'smtp' as const
  readonly #t: Transporter

  constructor(url: string, private readonly from: string) {
    this.#t = (require('nodemailer') as typeof import('nodemailer')).createTransport(url)
  }

  async send(m: Mail): Promise<void> {
    await this.#t.sendMail({ from: this.from, to: m.to, subject: m.subject, text: m.text })
  }
}

/**
 * Development default: the message is written to the server log instead of being sent — and
 * the start-up banner says so. Never both: with SMTP configured, nothing goes to the log.
 */
export class LogOutbox implements MailTransport {
  readonly kind = 'outbox' as const
  readonly sent: Mail[] = []

  constructor(private readonly log: Logger) {}

  async send(m: Mail): Promise<void> {
    this.sent.push(m)
    this.log.warn({ event: 'mail_outbox', outbox: `Subject: ${m.subject}\n\n${m.text}` }, `mail not sent (no TOLLGATE_SMTP_URL is set): the message for ***${m.to.slice(m.to.lastIndexOf('@'))} is written here instead`)
  }
}
