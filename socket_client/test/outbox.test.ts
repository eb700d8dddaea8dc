/** The outbox file: replay after a crash, damaged lines, caps, compaction. */
import assert from 'node:assert/strict'
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { after, describe, it } from 'node:test'
import { createLogger, type Logger } from '../src/log.js'
import { Outbox } from '../src/outbox.js'
import type { EventEnvelope } from '../src/protocol.js'
import { sleep } from './helpers.js'

const dir = mkdtempSync(join(tmpdir(), 'metapuppet-outbox-'))
after(() => rmSync(dir, { recursive: true, force: true }))
let fileNo = 0
const newPath = (): string => join(dir, `sub-${++fileNo}`, 'outbox.jsonl')

function capture(): { log: Logger; lines: string[] } {
  const lines: string[] = []
  return { log: createLogger('t', { level: 'debug', write: (line) => lines.push(line) }), lines }
}

function envelope(n: number, text = ''): EventEnvelope {
  return { id: `event-${n}`, bot: 'b', name: 'message', payload: { n, text }, ts: 1_700_000_000_000 + n }
}

const ids = (outbox: Outbox): string[] => outbox.pending().map((e) => e.envelope.id)

function open(path: string, log: Logger, caps: { maxEvents?: number; maxBytes?: number; compactMinBytes?: number } = {}): Outbox {
  return new Outbox({
    path,
    log,
    maxEvents: caps.maxEvents ?? 10_000,
    maxBytes: caps.maxBytes ?? 64 * 1024 * 1024,
    compactMinBytes: caps.compactMinBytes,
  })
}

describe('Outbox file', () => {
  it('keeps pending events across a crash, in order, without the acknowledged ones', () => {
    const path = newPath()
    const { log } = capture()
    const first = open(path, log)
    for (let n = 1; n <= 6; n++) first.add(envelope(n))
    first.remove('event-2')
    first.remove('event-5')
    // "Crash": the object is dropped without close() or compaction; only the appended log remains.
    const lines = readFileSync(path, 'utf8').trim().split('\n')
    assert.equal(lines.length, 8) // 6 events + 2 acks
    assert.deepEqual(JSON.parse(lines[6]!), { a: 'event-2' })

    writeFileSync(`${path}.tmp-999999`, 'a compaction cut short by the crash')
    const second = open(path, log)
    assert.deepEqual(ids(second), ['event-1', 'event-3', 'event-4', 'event-6'])
    assert.equal(existsSync(`${path}.tmp-999999`), false, 'stale temp files are removed')
    assert.deepEqual(second.get('event-4')?.envelope, envelope(4))
    assert.equal(second.stats.loaded, 4)
    // Loading compacts: the file now holds exactly the pending events.
    assert.deepEqual(
      readFileSync(path, 'utf8').trim().split('\n').map((l) => JSON.parse(l).e.id),
      ['event-1', 'event-3', 'event-4', 'event-6'],
    )
    second.add(envelope(7))
    second.close()
    assert.deepEqual(ids(open(path, log)), ['event-1', 'event-3', 'event-4', 'event-6', 'event-7'])
  })

  it('skips a truncated last line (crash mid-write) with a warning', () => {
    const path = newPath()
    const { log, lines } = capture()
    const first = open(path, log)
    first.add(envelope(1))
    first.add(envelope(2))
    const full = `${JSON.stringify({ e: envelope(3) })}\n`
    appendFileSync(path, full.slice(0, 25)) // the process died inside this write
    const second = open(path, log)
    assert.deepEqual(ids(second), ['event-1', 'event-2'])
    assert.equal(second.stats.skippedLines, 1)
    assert.ok(lines.some((l) => /WARN outbox file .*: skipped a truncated last line \(25 bytes/.test(l)), lines.join(''))
    // After the compaction new lines are appended cleanly.
    second.add(envelope(4))
    assert.deepEqual(ids(open(path, log)), ['event-1', 'event-2', 'event-4'])
  })

  it('skips unreadable lines anywhere and never fails to load', () => {
    const path = newPath()
    const { log, lines } = capture()
    mkdirSync(dirname(path), { recursive: true })
    writeFileSync(
      path,
      [
        JSON.stringify({ e: envelope(1) }),
        'not json',
        '{"e": {"id": 42}}',
        '[1,2]',
        '',
        JSON.stringify({ a: 'never-queued' }),
        JSON.stringify({ e: envelope(2) }),
        '\u0000\u0000\u0000',
        '',
      ].join('\n'),
    )
    const outbox = open(path, log)
    assert.deepEqual(ids(outbox), ['event-1', 'event-2'])
    assert.equal(outbox.stats.skippedLines, 4)
    assert.ok(lines.some((l) => /skipped 4 unreadable lines/.test(l)), lines.join(''))
  })

  it('drops the oldest events beyond the caps and logs one line with the count', async () => {
    const path = newPath()
    const { log, lines } = capture()
    const outbox = open(path, log, { maxEvents: 10 })
    for (let n = 1; n <= 25; n++) outbox.add(envelope(n))
    assert.equal(outbox.size, 10)
    assert.deepEqual(ids(outbox)[0], 'event-16')
    assert.equal(outbox.stats.dropped, 15)
    await sleep(20)
    const warnings = lines.filter((l) => /outbox over its cap/.test(l))
    assert.equal(warnings.length, 1, lines.join(''))
    assert.match(warnings[0]!, /cap \(10 events \/ \d+ bytes\): dropped the 15 oldest unacknowledged events; 10 remain/)
    // The file agrees after a crash.
    assert.deepEqual(ids(open(path, capture().log, { maxEvents: 10 })), ids(outbox))

    // The byte cap: each line is ~100 bytes, so 1 KiB keeps about ten.
    const small = open(newPath(), log, { maxBytes: 1024 })
    for (let n = 1; n <= 40; n++) small.add(envelope(n, 'x'.repeat(20)))
    assert.ok(small.bytes <= 1024)
    assert.ok(small.size >= 5 && small.size < 40, `kept ${small.size}`)
    assert.equal(ids(small).at(-1), 'event-40')
    assert.equal(small.stats.dropped, 40 - small.size)
  })

  it('applies the caps when loading a file written with larger ones', () => {
    const path = newPath()
    const { log, lines } = capture()
    const big = open(path, log)
    for (let n = 1; n <= 30; n++) big.add(envelope(n))
    const small = open(path, log, { maxEvents: 12 })
    assert.deepEqual(ids(small), Array.from({ length: 12 }, (_, i) => `event-${i + 19}`))
    assert.ok(lines.some((l) => /holds 30 pending events, over the cap .*dropped the 18 oldest/.test(l)), lines.join(''))
  })

  it('compacts the log once it outgrows the pending events', () => {
    const path = newPath()
    const { log } = capture()
    const outbox = open(path, log, { compactMinBytes: 4096 })
    const compactionsAtStart = outbox.stats.compactions
    for (let n = 1; n <= 500; n++) {
      outbox.add(envelope(n, 'y'.repeat(50)))
      if (n > 3) outbox.remove(`event-${n - 3}`) // three stay pending
    }
    assert.ok(outbox.stats.compactions > compactionsAtStart + 5, `compactions: ${outbox.stats.compactions}`)
    assert.ok(statSync(path).size < 8192 + 200, `file size ${statSync(path).size}`)
    assert.deepEqual(ids(open(path, log)), ['event-498', 'event-499', 'event-500'])
  })

  it('works in memory without a path', () => {
    const { log } = capture()
    const outbox = new Outbox({ path: null, maxEvents: 2, maxBytes: 1 << 20, log })
    outbox.add(envelope(1))
    outbox.add(envelope(1)) // the same id again: ignored
    outbox.add(envelope(2))
    outbox.add(envelope(3))
    assert.deepEqual(ids(outbox), ['event-2', 'event-3'])
    outbox.remove('event-2')
    outbox.close()
    assert.deepEqual(ids(outbox), ['event-3'])
  })
})
