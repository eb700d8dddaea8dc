import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { silentLogger } from '../src/log.js'
import type { CallOptions, JsonObject } from '../src/puppets/ilink/api.js'
import { ILinkError } from '../src/puppets/ilink/errors.js'
import { LONG_POLL_GRACE_MS, runUpdates, type UpdatesOptions } from '../src/puppets/ilink/updates.js'

type Step = JsonObject | ILinkError

function scripted(steps: Step[]) {
  const controller = new AbortController()
  const log: string[] = []
  const polls: { cursor: string; timeoutMs: number | undefined }[] = []
  const sleeps: number[] = []
  const problems: string[] = []
  let clock = 0
  const options: UpdatesOptions = {
    cursor: 'c0',
    longPollTimeoutMs: 35_000,
    log: silentLogger,
    async getUpdates(cursor: string, o: CallOptions): Promise<JsonObject> {
      polls.push({ cursor, timeoutMs: o.timeoutMs })
      const step = steps.shift()
      if (step === undefined) {
        controller.abort()
        throw new ILinkError('stopped', { code: 'aborted', endpoint: 'getupdates' })
      }
      if (step instanceof ILinkError) throw step
      return step
    },
    async onBatch(msgs: unknown[]) {
      log.push(`batch ${JSON.stringify(msgs)}`)
    },
    saveCursor(cursor: string) {
      log.push(`save ${cursor}`)
    },
    problem: (e) => problems.push(e instanceof Error ? e.message : String(e)),
    recovered: (n) => log.push(`recovered ${n}`),
    retryDelay: (attempt) => 1000 * attempt,
    sleep: async (ms) => {
      sleeps.push(ms)
      clock += ms
    },
    now: () => clock,
  }
  return { options, controller, log, polls, sleeps, problems }
}

describe('ilink receive loop', () => {
  it('saves each cursor only after its batch was handed on, and sends it next time', async () => {
    const s = scripted([
      { ret: 0, msgs: [{ message_id: '1' }], get_updates_buf: 'c1' },
      { ret: 0, msgs: [], get_updates_buf: 'c1' },
      { ret: 0, msgs: [{ message_id: '2' }, { message_id: '3' }], get_updates_buf: 'c2' },
    ])
    const outcome = await runUpdates(s.options, s.controller.signal)
    assert.deepEqual(outcome, { kind: 'stopped' })
    assert.deepEqual(s.log, ['batch [{"message_id":"1"}]', 'save c1', 'batch [{"message_id":"2"},{"message_id":"3"}]', 'save c2'])
    assert.deepEqual(s.polls.map((p) => p.cursor), ['c0', 'c1', 'c1', 'c2'])
  })

  it('honours longpolling_timeout_ms (bounded), with a grace period on the client', async () => {
    const s = scripted([{ longpolling_timeout_ms: 20_000 }, { longpolling_timeout_ms: 10 }, { longpolling_timeout_ms: 'x' }, {}])
    await runUpdates(s.options, s.controller.signal)
    assert.deepEqual(s.polls.map((p) => p.timeoutMs! - LONG_POLL_GRACE_MS), [35_000, 20_000, 1_000, 1_000, 1_000])
  })

  it('backs off on failures (growing delays), reports each, and notes the recovery', async () => {
    const fail = (): ILinkError => new ILinkError('getupdates: HTTP 500', { code: 'http_500', endpoint: 'getupdates', httpStatus: 500 })
    const s = scripted([fail(), fail(), fail(), { msgs: [{ message_id: '1' }], get_updates_buf: 'c1' }])
    await runUpdates(s.options, s.controller.signal)
    assert.deepEqual(s.sleeps, [1000, 2000, 3000])
    assert.equal(s.problems.length, 3)
    assert.ok(s.log.includes('recovered 3'))
  })

  it('errcode -14 ends the loop as expired', async () => {
    const s = scripted([{ msgs: [] }, new ILinkError('expired', { code: -14, endpoint: 'getupdates' })])
    const outcome = await runUpdates(s.options, s.controller.signal)
    assert.equal(outcome.kind, 'expired')
  })

  it('an empty answer that comes back at once waits before the next poll (no tight loop)', async () => {
    const s = scripted([{ msgs: [] }, { msgs: [] }, { msgs: [] }])
    await runUpdates(s.options, s.controller.signal)
    assert.deepEqual(s.sleeps, [500, 500, 500])
  })

  it('bad answers: msgs not a list is a failure; a huge or non-string cursor is refused and the old one kept, the messages still delivered', async () => {
    const s = scripted([
      { msgs: 'nope' },
      { msgs: [{ message_id: '1' }], get_updates_buf: 'x'.repeat(10 * 1024 * 1024) },
      { msgs: [{ message_id: '2' }], get_updates_buf: 12 },
      { msgs: [], get_updates_buf: 'c1' },
    ])
    await runUpdates(s.options, s.controller.signal)
    assert.deepEqual(s.log, ['recovered 1', 'batch [{"message_id":"1"}]', 'batch [{"message_id":"2"}]', 'save c1'])
    assert.deepEqual(s.polls.map((p) => p.cursor), ['c0', 'c0', 'c0', 'c0', 'c1'])
    assert.equal(s.problems.length, 3)
    assert.match(s.problems[1]!, /get_updates_buf of 10485760 characters/)
    // Refused cursors back off like failures: the server would otherwise answer the same batch at once, forever.
    assert.deepEqual(s.sleeps.slice(0, 3), [1000, 1000, 2000])
  })
})
