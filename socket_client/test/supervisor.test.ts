/** Redaction, repeated-error suppression and Wechaty's log lines, with fakes (fast). */
import assert from 'node:assert/strict'
import { after, it } from 'node:test'
import { createLogger } from '../src/log.js'
import type { ErrorEventPayload } from '../src/protocol.js'
import { addSecret, clearSecrets, redact, redactConsole, redactDeep } from '../src/secrets.js'
import { ErrorGate } from '../src/supervisor.js'
import { wechatyLine } from '../src/wechaty-log.js'
import { sleep } from './helpers.js'

after(() => clearSecrets())

it('redacts registered secrets in text, in nested payloads and in every log line', () => {
  clearSecrets()
  addSecret('insecure_5b0e6c1a-aaaa-bbbb')
  addSecret('server-token-0123456789')
  addSecret('abc') // too short to be a secret: ignored
  addSecret(null)
  assert.equal(redact('Invalid Wechaty TOKEN "insecure_5b0e6c1a-aaaa-bbbb"'), 'Invalid Wechaty TOKEN "<redacted>"')
  assert.equal(redact('only the secret part: 5b0e6c1a-aaaa-bbbb.'), 'only the secret part: <redacted>.')
  assert.equal(redact('abc stays'), 'abc stays')
  const payload = { name: 'Error', message: 'x server-token-0123456789 y', stack: null, nested: [{ s: 'server-token-0123456789' }] }
  assert.deepEqual(redactDeep(payload), { name: 'Error', message: 'x <redacted> y', stack: null, nested: [{ s: '<redacted>' }] })
  assert.equal(payload.message, 'x server-token-0123456789 y', 'the original is not changed')
  const lines: string[] = []
  const log = createLogger('bot', { level: 'debug', write: (line) => lines.push(line) })
  log.warn('failed: %s', new Error('token insecure_5b0e6c1a-aaaa-bbbb refused'))
  assert.equal(lines.length, 1)
  assert.ok(lines[0]!.includes('<redacted>') && !lines[0]!.includes('5b0e6c1a'), lines[0])
  // what packages print straight to the console
  const printed: string[] = []
  const sink = (...args: unknown[]): void => { printed.push(args.map(String).join(" ")) }
  const fake = { log: sink, info: sink, warn: sink, error: sink, debug: sink }
  redactConsole(fake)
  fake.error('discover() endpoint<https://api.chatie.io/v0/hosties/%s> rejection', 'insecure_5b0e6c1a-aaaa-bbbb')
  assert.deepEqual(printed, ['discover() endpoint<https://api.chatie.io/v0/hosties/<redacted>> rejection'])
})

it('forwards an identical error at most once per interval, then how often it came back', async () => {
  const sent: ErrorEventPayload[] = []
  const gate = new ErrorGate({ intervalMs: 80, forward: (p) => sent.push(p), maxPerInterval: 3 })
  const error = (message: string): ErrorEventPayload => ({ name: 'Error', message, stack: null })
  for (let i = 0; i < 5; i++) gate.admit(error('getaddrinfo ENOTFOUND login.wx.qq.com'))
  gate.admit(error('something else'))
  assert.deepEqual(sent.map((p) => p.message), ['getaddrinfo ENOTFOUND login.wx.qq.com', 'something else'])
  await sleep(130)
  assert.equal(sent.length, 3)
  assert.equal(sent[2]!.message, 'getaddrinfo ENOTFOUND login.wx.qq.com (4 more times in the last 0.1 s)')
  assert.equal(sent[2]!.repeated, 4)
  // more kinds than the budget: the rest are summed up in one event
  for (let i = 0; i < 6; i++) gate.admit(error(`distinct ${i}`))
  await sleep(130)
  const suppressed = sent.filter((p) => p.name === 'ErrorsSuppressed')
  assert.equal(suppressed.length, 1, JSON.stringify(sent))
  assert.equal(suppressed[0]!.repeated, 3)
  assert.equal(sent.filter((p) => p.message.startsWith('distinct')).length, 3)
  gate.close()
})

it("reads Wechaty's log lines into our levels", () => {
  assert.deepEqual(wechatyLine('WARN', '09:58:41 WARN GrpcManager initClient() TLS: disabled (INSECURE)'), {
    level: 'warn',
    line: 'GrpcManager initClient() TLS: disabled (INSECURE)',
  })
  assert.deepEqual(wechatyLine('ERR', '09:58:59 ERR Contact rejected'), { level: 'error', line: 'Contact rejected' })
  assert.equal(wechatyLine('VERB', 'x').level, 'debug')
})
