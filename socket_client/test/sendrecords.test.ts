/** Typed actions and send records: a send id is sent once, across a crash of this process too. */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import type { Wechaty } from 'wechaty'
import { ActionRunner } from '../src/actions.js'
import { silentLogger } from '../src/log.js'
import { Outbox } from '../src/outbox.js'
import type { ErrorEventPayload, SayAction } from '../src/protocol.js'

const dir = mkdtempSync(join(tmpdir(), 'metapuppet-sends-'))
after(() => rmSync(dir, { recursive: true, force: true }))
let fileNo = 0
const newPath = (): string => join(dir, `sub-${++fileNo}`, 'outbox.jsonl')

const open = (path: string): Outbox =>
  new Outbox({ path, log: silentLogger, maxEvents: 1000, maxBytes: 1 << 20, groupCommit: true })

/** A bot whose contacts' `say` is recorded, and may hang (a crash mid-send). */
function fakeBot(hang = false): { bot: Wechaty; said: string[] } {
  const said: string[] = []
  const contact = (id: string) => ({
    ready: async () => {},
    say: (text: string) => {
      said.push(`${id}:${text}`)
      return hang ? new Promise(() => {}) : Promise.resolve({ id: `m-${said.length}` })
    },
  })
  const bot = { Contact: { load: contact }, Room: { load: contact }, puppet: {} } as unknown as Wechaty
  return { bot, said }
}

const say = (sendId: string, text: string): SayAction => ({
  action: 'say',
  send_id: sendId,
  to: 'alice',
  kind: 'contact',
  sayable: { type: 'text', text },
  mentions: [],
})

describe('send records', () => {
  it('answers a repeated send id from its record, also after a restart, without sending again', async () => {
    const path = newPath()
    const { bot, said } = fakeBot()
    const outbox = open(path)
    const runner = new ActionRunner({ bot, log: silentLogger, outbox })
    const first = await runner.act({ ...say('e1#0', 'hi'), timeout_ms: 1000 })
    const again = await runner.act({ ...say('e1#0', 'hi'), timeout_ms: 1000 })
    assert.deepEqual(first, { ok: true, result: 'm-1' })
    assert.deepEqual(again, first)
    assert.deepEqual(said, ['alice:hi'])
    // a new process on the same file (no close: as after a SIGKILL)
    const reopened = open(path)
    const later = new ActionRunner({ bot, log: silentLogger, outbox: reopened })
    assert.deepEqual(await later.act({ ...say('e1#0', 'hi'), timeout_ms: 1000 }), first)
    assert.deepEqual(said, ['alice:hi'])
    assert.equal(later.stats.repeated, 1)
  })

  it('runs the actions of an ack once, and a crash before they ran leaves them to the next start', async () => {
    const path = newPath()
    const { bot, said } = fakeBot()
    const outbox = open(path)
    outbox.add({ id: 'e2', bot: 'b', name: 'message', payload: {}, ts: 1 })
    outbox.release('e2', [say('e2#0', 'one'), say('e2#1', 'two')])
    outbox.flush() // the release is on disk; the process dies before running them
    const reopened = open(path)
    assert.deepEqual(reopened.pending(), [])
    const runner = new ActionRunner({ bot, log: silentLogger, outbox: reopened })
    runner.resume()
    await new Promise((resolve) => setTimeout(resolve, 50))
    assert.deepEqual(said, ['alice:one', 'alice:two'])
    runner.runAcked([say('e2#0', 'one')]) // the server answering a re-sent copy the same way
    await new Promise((resolve) => setTimeout(resolve, 50))
    assert.deepEqual(said, ['alice:one', 'alice:two'])
  })

  it('never repeats a send a crash cut short, and reports it once', async () => {
    const path = newPath()
    const hanging = fakeBot(true)
    const outbox = open(path)
    const runner = new ActionRunner({ bot: hanging.bot, log: silentLogger, outbox })
    void runner.act({ ...say('e3#0', 'maybe'), timeout_ms: 60_000 })
    await new Promise((resolve) => setTimeout(resolve, 20))
    assert.deepEqual(hanging.said, ['alice:maybe']) // with the puppet when the process "dies"
    const { bot, said } = fakeBot()
    const reported: ErrorEventPayload[] = []
    const next = new ActionRunner({ bot, log: silentLogger, outbox: open(path), onFailed: (p) => reported.push(p) })
    next.resume()
    assert.deepEqual(
      reported.map((p) => [p.name, p.send_id]),
      [['SendInterrupted', 'e3#0']],
    )
    const answer = await next.act({ ...say('e3#0', 'maybe'), timeout_ms: 1000 })
    assert.equal(answer.ok, false)
    assert.deepEqual(said, [])
    next.resume() // reported once only
    assert.equal(reported.length, 1)
  })
})
