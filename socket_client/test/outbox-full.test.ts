/**
 * A failing outbox file (issue 11 item 12): a full disk must never lose an event without a word.
 * Events stay in memory (within the caps), the failure is loud, the file is repaired as soon as
 * it can be written, and a stop names what it could not save.
 *
 * Failures: an injected file system (full disk on demand) and a real ENOSPC from /dev/full.
 */
import assert from 'node:assert/strict'
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { createLogger, type Logger } from '../src/log.js'
import { DeadLetters } from '../src/deadletters.js'
import { privateDir } from '../src/files.js'
import { prepareMemoryCard } from '../src/memory.js'
import { Outbox, realOutboxFs, type OutboxFs, type OutboxWriteFailure } from '../src/outbox.js'
import type { EventEnvelope } from '../src/protocol.js'
import { sleep } from './helpers.js'

const dir = mkdtempSync(join(tmpdir(), 'metapuppet-outbox-full-'))
after(() => rmSync(dir, { recursive: true, force: true }))
let fileNo = 0
const newPath = (): string => join(dir, `case-${++fileNo}`, 'outbox.jsonl')

function capture(): { log: Logger; lines: string[] } {
  const lines: string[] = []
  return { log: createLogger('t', { level: 'debug', write: (line) => lines.push(line) }), lines }
}

const envelope = (n: number): EventEnvelope => ({ id: `event-${n}`, bot: 'b', name: 'message', payload: { n }, ts: 1_700_000_000_000 + n })

function enospc(call: string): NodeJS.ErrnoException {
  const error = new Error(`ENOSPC: no space left on device, ${call}`) as NodeJS.ErrnoException
  error.code = 'ENOSPC'
  return error
}

/** The real file system, with a switch that makes every write fail like a full disk. */
function fullDisk(): { fs: OutboxFs; full: boolean } {
  const state = {
    full: false,
    fs: {
      openAppend: (path: string) => realOutboxFs.openAppend(path),
      write: (fd: number, buffer: Buffer, offset: number) => {
        if (state.full) throw enospc('write')
        return realOutboxFs.write(fd, buffer, offset)
      },
      writeFile: (path: string, body: string) => {
        if (state.full) throw enospc('write')
        realOutboxFs.writeFile(path, body)
      },
      rename: (from: string, to: string) => realOutboxFs.rename(from, to),
    } satisfies OutboxFs,
  }
  return state
}

const idsInFile = (path: string): string[] => {
  const pending = new Map<string, true>()
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (line === '') continue
    const record = JSON.parse(line) as { e?: EventEnvelope; a?: string }
    if (record.e !== undefined) pending.set(record.e.id, true)
    if (record.a !== undefined) pending.delete(record.a)
  }
  return [...pending.keys()]
}

describe('outbox on a full disk', () => {
  it('holds the events in memory, says so at once and again, tells the caller, and repairs the file by itself', async () => {
    const path = newPath()
    const { log, lines } = capture()
    const disk = fullDisk()
    const failures: OutboxWriteFailure[] = []
    const outbox = new Outbox({
      path,
      log,
      maxEvents: 1000,
      maxBytes: 1 << 20,
      fs: disk.fs,
      retryMs: 50,
      reminderMs: 100,
      onWriteError: (failure) => failures.push(failure),
    })
    for (let n = 1; n <= 45; n++) outbox.add(envelope(n))
    disk.full = true
    for (let n = 46; n <= 113; n++) outbox.add(envelope(n))

    assert.equal(outbox.size, 113, 'nothing is dropped')
    assert.equal(outbox.unsavedCount, 68)
    assert.equal(outbox.failing, true)
    const errors = lines.filter((l) => l.includes('ERROR cannot write the outbox file'))
    assert.ok(errors.length >= 1, lines.join(''))
    assert.match(errors[0]!, /ENOSPC.*1 unacknowledged events \(\d+ bytes\) are held in memory only/)
    await sleep(250) // reminders keep coming while it fails, each with the count
    assert.ok(lines.some((l) => /ERROR cannot write the outbox file .*: ENOSPC.*; 68 unacknowledged events/.test(l)), lines.join(''))
    assert.equal(failures.length, 1, 'told once per failure streak')
    assert.equal(failures[0]!.error, 'ENOSPC: no space left on device, write')
    assert.deepEqual(idsInFile(path).length, 45, 'the file holds what fitted')

    // Space again: no new event needed, the retry timer rewrites the file from memory.
    disk.full = false
    await sleep(200)
    assert.equal(outbox.failing, false)
    assert.equal(outbox.unsavedCount, 0)
    assert.equal(idsInFile(path).length, 113)
    assert.ok(lines.some((l) => /INFO outbox file .* is writable again: the 68 events held in memory only are saved/.test(l)), lines.join(''))
    outbox.add(envelope(114))
    outbox.close()
    assert.equal(new Outbox({ path, log, maxEvents: 1000, maxBytes: 1 << 20 }).size, 114)
  })

  it('a stop while the disk is still full names the events it could not save', () => {
    const path = newPath()
    const { log, lines } = capture()
    const disk = fullDisk()
    const outbox = new Outbox({ path, log, maxEvents: 1000, maxBytes: 1 << 20, fs: disk.fs, retryMs: 10_000 })
    outbox.add(envelope(1))
    disk.full = true
    outbox.add(envelope(2))
    outbox.add(envelope(3))
    outbox.remove('event-3') // delivered: no longer at risk
    outbox.close()
    assert.equal(outbox.unsavedCount, 1)
    assert.ok(
      lines.some((l) => /ERROR outbox: 1 unacknowledged events could not be written to .* \(ENOSPC: no space left on device, write\) and are lost with this process: event-2/.test(l)),
      lines.join(''),
    )
  })

  it('survives a real ENOSPC (appends to /dev/full): every event still ends up in the file', () => {
    const path = newPath()
    const { log, lines } = capture()
    let appendsToDevFull = true
    const fs: OutboxFs = {
      ...realOutboxFs,
      // The log itself is opened on /dev/full: each append gets ENOSPC from the kernel.
      openAppend: (p) => (appendsToDevFull ? openSync('/dev/full', 'a') : realOutboxFs.openAppend(p)),
    }
    const outbox = new Outbox({ path, log, maxEvents: 1000, maxBytes: 1 << 20, fs, retryMs: 0 })
    for (let n = 1; n <= 20; n++) outbox.add(envelope(n))
    assert.equal(outbox.size, 20)
    assert.ok(outbox.stats.writeErrors > 0)
    assert.ok(lines.some((l) => /ERROR cannot write the outbox file .*: ENOSPC: no space left on device, write/.test(l)), lines.join(''))
    appendsToDevFull = false
    outbox.close() // the final rewrite goes to the real file
    assert.equal(outbox.unsavedCount, 0)
    assert.equal(idsInFile(path).length, 20)
    assert.equal(statSync(path).mode & 0o777, 0o600)
  })

  it('creates its file 0600 and its folder 0700 whatever the umask (dead letters and memory card too)', () => {
    const previous = process.umask(0)
    try {
      const path = newPath()
      const outbox = new Outbox({ path, log: capture().log, maxEvents: 10, maxBytes: 1 << 20 })
      outbox.add(envelope(1))
      outbox.close()
      assert.equal(statSync(path).mode & 0o777, 0o600)
      assert.equal(statSync(join(path, '..')).mode & 0o777, 0o700)
      closeSync(openSync(path, 'r'))
      // the dead letters, the memory card and every folder created on the way
      const root = join(dir, `case-${++fileNo}`)
      const letters = new DeadLetters({ path: join(root, 'a', 'b', 'dead-letters.jsonl'), log: capture().log })
      assert.notEqual(letters.add({ reason: 'too_large_for_server', envelope: envelope(1), size: 1, limit: 1 }), null)
      prepareMemoryCard(join(root, 'wechaty', 'bot.memory-card.json'))
      for (const folder of [root, join(root, 'a'), join(root, 'a', 'b'), join(root, 'wechaty')]) {
        assert.equal(statSync(folder).mode & 0o777, 0o700, folder)
      }
      for (const file of [join(root, 'a', 'b', 'dead-letters.jsonl'), join(root, 'wechaty', 'bot.memory-card.json')]) {
        assert.equal(statSync(file).mode & 0o777, 0o600, file)
      }
      assert.equal(statSync(privateDir(join(root, 'x', 'y'))).mode & 0o777, 0o700)
    } finally {
      process.umask(previous)
    }
  })
})
