/**
 * The bridge against a real Socket.IO server (socket.io, Node) standing in for the Python one.
 */
import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, afterEach, describe, it } from 'node:test'
import { Server, type Socket as ServerSocket } from 'socket.io'
import { Bridge, type BridgeOptions } from '../src/bridge.js'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { reconnectDelay } from '../src/backoff.js'
import { Executor } from '../src/executor.js'
import { mockCapabilities } from '../src/capabilities.js'
import { silentLogger } from '../src/log.js'
import { Outbox } from '../src/outbox.js'
import type { EventEnvelope } from '../src/protocol.js'
import { format } from 'node:util'
import { clientProof, keyId, proofMatches, serverProof } from '../src/protocol.js'
import { serveHandshake, type HandshakeOptions, type HandshakeServer } from './handshake-server.js'
import { sleep } from './helpers.js'

interface Harness {
  io: Server
  url: string
  /** Server-side sockets, in connection order. */
  sockets: ServerSocket[]
  /** Events the server received, in order (duplicates included). */
  received: EventEnvelope[]
  /** What the server answers to an event; default {ok: true}; undefined = no answer. */
  answer: (envelope: EventEnvelope, socket: ServerSocket) => unknown
  /** Another verdict per connection attempt (the key of the "good" token is checked too); default admits. */
  admit: (auth: Record<string, unknown>, attempt: number) => string | null
  /** The server's side of the handshake. */
  handshake: HandshakeServer
  close(): Promise<void>
}

const cleanups: Array<() => unknown> = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

async function startServer(options: Partial<HandshakeOptions> = {}): Promise<Harness> {
  const http = createServer()
  const io = new Server(http)
  const harness: Harness = {
    io,
    url: '',
    sockets: [],
    received: [],
    answer: () => ({ ok: true }),
    admit: () => null,
    handshake: undefined as unknown as HandshakeServer,
    close: async () => {
      io.close()
      await new Promise((resolve) => http.close(resolve))
    },
  }
  harness.handshake = serveHandshake(io, {
    token: 'good',
    admit: (auth, attempt) => harness.admit(auth, attempt),
    ...options,
  })
  io.on('connection', (socket) => {
    harness.sockets.push(socket)
    socket.on('event', (envelope: EventEnvelope, ack?: (a: unknown) => void) => {
      harness.received.push(envelope)
      const answer = harness.answer(envelope, socket)
      if (answer !== undefined && typeof ack === 'function') ack(answer)
    })
  })
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve))
  harness.url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`
  cleanups.push(() => harness.close())
  return harness
}

function startBridge(
  url: string,
  overrides: Partial<BridgeOptions> = {},
): Bridge {
  const bridge = new Bridge({
    url,
    token: 'good',
    botName: 'bridge-bot',
    log: silentLogger,
    executor: new Executor({ bot: null, log: silentLogger }),
    reconnectDelayMs: 20,
    reconnectDelayMaxMs: 50,
    heartbeatMs: 0,
    onFatal: (message) => assert.fail(`unexpected fatal: ${message}`),
    ...overrides,
  })
  cleanups.push(() => bridge.close())
  return bridge
}

function envelope(n: number, name: EventEnvelope['name'] = 'message', ts = Date.now()): EventEnvelope {
  return { id: `event-${n}`, bot: 'bridge-bot', name, payload: { n }, ts }
}

async function until(condition: () => boolean, what: string, timeoutMs = 3_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`)
    await sleep(5)
  }
}

describe('Bridge', () => {
  it('authenticates as a puppet and answers exec and echo through acks', async () => {
    const server = await startServer()
    const bridge = startBridge(server.url)
    bridge.start()
    await until(() => server.sockets.length === 1, 'a connection')
    await until(() => bridge.connected, 'the handshake')
    const socket = server.sockets[0]!
    const auth = socket.handshake.auth as Record<string, unknown>
    assert.deepEqual(Object.keys(auth).sort(), ['bot', 'key', 'nonce', 'protocol', 'role'])
    assert.deepEqual([auth.role, auth.protocol, auth.bot], ['puppet', 3, 'bridge-bot'])
    assert.equal(auth.key, keyId('good', auth.nonce as string), 'a key derived from the token, never the token')
    assert.deepEqual(await socket.timeout(2000).emitWithAck('exec', { code: 'return args.x + 1', args: { x: 41 } }), {
      ok: true,
      result: 42,
    })
    const bad = await socket.timeout(2000).emitWithAck('exec', { code: '' })
    assert.equal(bad.ok, false)
    assert.equal(bad.error.kind, 'bad_request')
    const thrown = await socket.timeout(2000).emitWithAck('exec', { code: 'throw new Error("nope")' })
    assert.equal(thrown.error.kind, 'runtime')
    const data = { a: [1, 'two', { three: null }], s: '`${x}`' }
    assert.deepEqual(await socket.timeout(2000).emitWithAck('echo', data), data)
  })

  it('sends the channel capabilities in the auth payload', async () => {
    const server = await startServer()
    const capabilities = mockCapabilities()
    const bridge = startBridge(server.url, { capabilities })
    bridge.start()
    await until(() => server.sockets.length === 1, 'a connection')
    assert.deepEqual(server.sockets[0]!.handshake.auth.capabilities, capabilities)
  })

  it('sends events queued while offline, in order, once connected', async () => {
    const server = await startServer()
    const bridge = startBridge(server.url)
    for (let n = 1; n <= 5; n++) bridge.send(envelope(n))
    assert.equal(bridge.outbox.size, 5)
    bridge.start()
    await until(() => bridge.outbox.size === 0, 'the outbox to drain')
    assert.deepEqual(server.received.map((e) => e.id), ['event-1', 'event-2', 'event-3', 'event-4', 'event-5'])
    bridge.send(envelope(6))
    await until(() => server.received.length === 6 && bridge.outbox.size === 0, 'event 6')
  })

  it('re-sends unacknowledged events after a reconnect', async () => {
    const server = await startServer()
    const bridge = startBridge(server.url)
    server.answer = () => undefined // first connection: never acknowledge
    bridge.start()
    await until(() => bridge.connected, 'a connection')
    for (let n = 1; n <= 3; n++) bridge.send(envelope(n))
    await until(() => server.received.length === 3, 'three events')
    assert.equal(bridge.outbox.size, 3)

    server.answer = () => ({ ok: true })
    server.sockets[0]!.conn.close() // drop the transport, as a network failure would
    await until(() => bridge.outbox.size === 0, 'the re-sent events to be acknowledged')
    assert.deepEqual(
      server.received.map((e) => e.id),
      ['event-1', 'event-2', 'event-3', 'event-1', 'event-2', 'event-3'],
    )
    // the first copy says no server can have seen it; a re-sent copy says it may have been
    assert.deepEqual(server.received.map((e) => e.attempt), [1, 1, 1, 2, 2, 2])
    assert.equal(server.sockets.length, 2)
  })

  it('drops an event the server rejects instead of re-sending it', async () => {
    const server = await startServer()
    const bridge = startBridge(server.url)
    server.answer = (e) =>
      e.id === 'event-2' ? { ok: false, error: { kind: 'bad_request', name: 'BadRequest', message: 'no' } } : { ok: true }
    bridge.start()
    await until(() => bridge.connected, 'a connection')
    for (let n = 1; n <= 3; n++) bridge.send(envelope(n))
    await until(() => bridge.outbox.size === 0, 'all answers')
    server.sockets[0]!.conn.close()
    await until(() => server.sockets.length === 2 && bridge.connected, 'a reconnect')
    await sleep(50)
    assert.deepEqual(server.received.map((e) => e.id), ['event-1', 'event-2', 'event-3'])
  })

  it('sends heartbeats only while connected and never stores them', async () => {
    const server = await startServer()
    const bridge = startBridge(server.url, { heartbeatMs: 30 })
    bridge.send(envelope(1, 'heartbeat'))
    assert.equal(bridge.outbox.size, 0)
    bridge.start()
    await until(() => server.received.some((e) => e.name === 'heartbeat'), 'a client heartbeat')
    const beat = server.received.find((e) => e.name === 'heartbeat')!
    assert.equal(beat.payload.source, 'client')
    assert.equal(typeof beat.payload.uptime_s, 'number')
    assert.ok(!server.received.some((e) => e.id === 'event-1'))
    assert.equal(bridge.outbox.size, 0)
  })

  it('gives up with exit code 2 when the server refuses the token', async () => {
    const server = await startServer()
    let fatal: { message: string; code: number } | undefined
    const bridge = startBridge(server.url, { token: 'bad', onFatal: (message, code) => { fatal = { message, code } } })
    bridge.start()
    await until(() => fatal !== undefined, 'the refusal')
    assert.equal(fatal?.code, 2)
    assert.match(fatal?.message ?? '', /refused this client: invalid token/)
    assert.ok(!(fatal?.message ?? '').includes('bad'), 'the token must not be printed')
  })

  it('keeps retrying after other refusals', async () => {
    const server = await startServer()
    server.admit = (_auth, attempt) => (attempt < 3 ? 'server busy' : null)
    const bridge = startBridge(server.url)
    bridge.start()
    await until(() => bridge.connected, 'a connection after two refusals')
  })

  it('keeps retrying while the server is down', async () => {
    const server = await startServer()
    const url = server.url
    await server.close()
    const bridge = startBridge(url)
    bridge.start()
    bridge.send(envelope(1))
    await sleep(150)
    assert.equal(bridge.connected, false)
    assert.equal(bridge.outbox.size, 1)
  })
})

describe('Bridge with several server URLs (client.urls)', () => {
  it('moves to the next server when its server dies, and sends the unacknowledged events there', async () => {
    const first = await startServer()
    const second = await startServer()
    const bridge = startBridge(first.url, { urls: [first.url, second.url] })
    first.answer = () => undefined // the first server dies before acknowledging anything
    bridge.start()
    await until(() => bridge.connected, 'a connection')
    assert.equal(bridge.url, first.url)
    for (let n = 1; n <= 3; n++) bridge.send(envelope(n))
    await until(() => first.received.length === 3, 'three events at the first server')

    await first.close() // gone for good, as a SIGKILLed process is
    await until(() => bridge.connected && bridge.url === second.url, 'a connection to the second server')
    await until(() => bridge.outbox.size === 0, 'the events acknowledged by the second server')
    assert.deepEqual(
      second.received.map((e) => e.id),
      ['event-1', 'event-2', 'event-3'],
    )
    bridge.send(envelope(4))
    await until(() => second.received.length === 4, 'a new event at the second server')
  })

  it('keeps going round the list with the usual backoff while every server is down', async () => {
    const servers = [await startServer(), await startServer()]
    const urls = servers.map((s) => s.url)
    for (const server of servers) await server.close()
    const bridge = startBridge(urls[0]!, { urls })
    const tried = new Set<string>()
    bridge.start()
    const deadline = Date.now() + 2_000
    while (tried.size < 2 && Date.now() < deadline) {
      tried.add(bridge.url)
      await sleep(5)
    }
    assert.deepEqual([...tried].sort(), [...urls].sort())
    assert.ok(bridge.retryDelays.length >= 2, 'each move waits for the backoff')
    assert.ok(bridge.retryDelays.every((d) => d >= 10 && d <= 50), `delays ${bridge.retryDelays}`)
    assert.equal(bridge.connected, false)
  })
})

describe('Bridge handshake', () => {
  it('computes the same keys and proofs as the Python side (fixed vectors)', () => {
    const a = 'a'.repeat(64)
    const b = 'b'.repeat(64)
    assert.equal(keyId('tok', a), '2dd3c9e11b52c97e02939ac1f2f4c88e212463793dbc21512f62c3f52b6016ed')
    const h = { role: 'puppet' as const, bot: 'bot-é', clientNonce: a, serverNonce: b, replace: true }
    assert.equal(serverProof('tok', h), 'a63af5ad178008dae71b3d29db0e1b0958ad3303a96b95dd1260e60a30bb76bf')
    assert.equal(clientProof('tok', h), 'ddb3a9b47674f8f114a911551ddf5f19d914ff903925dfafe7c63d67574ed59a')
    const web = { role: 'web' as const, bot: null, clientNonce: a, serverNonce: b, replace: false }
    assert.equal(serverProof('tok', web), '49975eee498e247cb70a1cd780aea7b6d42e22408dbc94500a5e039729e4546c')
    assert.equal(proofMatches(keyId('tok', a), keyId('tok', b)), false)
    assert.equal(proofMatches(keyId('tok', a), 42), false)
  })

  it('refuses a server that cannot prove it holds the token: no event, no exec, no proof, a log line', async () => {
    const server = await startServer({ impostor: true })
    const lines: string[] = []
    const log = { ...silentLogger, error: (...args: unknown[]) => lines.push(format(...args)) }
    const bridge = startBridge(server.url, { log, reconnectDelayMs: 20, reconnectDelayMaxMs: 40 })
    bridge.send(envelope(1))
    bridge.start()
    await until(() => bridge.stats.impostors >= 2, 'two refusals of the impostor')
    const socket = server.sockets.at(-1)!
    const answer = await socket.timeout(2000).emitWithAck('exec', { code: 'return 1' }).catch(() => 'no answer')
    assert.ok(answer === 'no answer' || (answer as { ok: boolean }).ok === false)
    assert.equal(server.received.length, 0, 'no event reached the impostor')
    assert.equal(server.handshake.proofs.length, 0, 'no proof either (it would not help it, but still)')
    assert.equal(bridge.connected, false)
    assert.equal(bridge.outbox.size, 1, 'the event waits for the real server')
    assert.match(lines[0] ?? '', /could not prove it holds the token: refusing to talk to it/)
  })

  it('refuses a server whose proof was made with another token (a server of another deployment)', async () => {
    const server = await startServer({ impostor: 'some-other-token' })
    const bridge = startBridge(server.url)
    bridge.start()
    await until(() => bridge.stats.impostors >= 1, 'the refusal')
    assert.equal(server.handshake.proofs.length, 0)
  })

  it('runs nothing the server asks before the handshake is over', async () => {
    const server = await startServer({ silent: true })
    const bridge = startBridge(server.url, { handshakeTimeoutMs: 5_000 })
    bridge.start()
    await until(() => server.sockets.length === 1, 'a Socket.IO connection')
    const socket = server.sockets[0]!
    const exec = await socket.timeout(2000).emitWithAck('exec', { code: 'return 1' })
    assert.deepEqual([exec.ok, exec.error.name], [false, 'Unauthenticated'])
    const control = await socket.timeout(2000).emitWithAck('control', { action: 'restart-bot' })
    assert.equal(control.ok, false)
    const echo = await socket.timeout(2000).emitWithAck('echo', { a: 1 })
    assert.equal(echo.ok, false)
    assert.equal(bridge.connected, false)
  })

  it('gives up on a server that sends no challenge and tries again later', async () => {
    const server = await startServer({ silent: true })
    const bridge = startBridge(server.url, { handshakeTimeoutMs: 50 })
    bridge.start()
    await until(() => server.handshake.attempts() >= 2, 'a second attempt')
    assert.equal(bridge.connected, false)
  })

  it('keeps retrying while the server says another client has the bot, and sends replace when asked', async () => {
    let taken = 2
    const server = await startServer({
      answer: (socket) =>
        taken-- > 0
          ? { ok: false, error: { kind: 'bot_taken', name: 'ProtocolError', message: "bot 'bridge-bot' is already connected" } }
          : { ok: true, role: 'puppet', bot: String(socket.handshake.auth.bot) },
    })
    const bridge = startBridge(server.url)
    bridge.start()
    await until(() => bridge.connected, 'a connection once the bot is free')
    assert.equal(server.handshake.attempts(), 3)
    assert.equal(server.sockets[0]!.handshake.auth.replace, undefined)

    const replacing = startBridge(server.url, { replaceExisting: true })
    replacing.start()
    await until(() => replacing.connected, 'the second client')
    assert.equal(server.sockets.at(-1)!.handshake.auth.replace, true)
  })
})

describe('Bridge reliability', () => {
  const dir = mkdtempSync(join(tmpdir(), 'metapuppet-bridge-'))
  after(() => rmSync(dir, { recursive: true, force: true }))
  let fileNo = 0
  const outboxAt = (path: string): Outbox =>
    new Outbox({ path, maxEvents: 10_000, maxBytes: 64 * 1024 * 1024, log: silentLogger })

  it('re-sends the outbox file of a crashed process first, in order, once, without the acknowledged events', async () => {
    const path = join(dir, `crash-${++fileNo}.jsonl`)
    const server = await startServer()
    // First process: the server acknowledges only events 2 and 4, then the process "crashes".
    server.answer = (e) => (e.id === 'event-2' || e.id === 'event-4' ? { ok: true } : undefined)
    const firstOutbox = outboxAt(path)
    const first = startBridge(server.url, { outbox: firstOutbox })
    first.start()
    await until(() => first.connected, 'a connection')
    for (let n = 1; n <= 5; n++) first.send(envelope(n))
    await until(() => server.received.length === 5 && first.outbox.size === 3, 'five events, two acks')
    firstOutbox.close = () => {} // crash: no compaction, no clean close; only the appended log is left
    first.close()

    // Second process, same file: pending events go first, then one queued before and one after connecting.
    server.received.length = 0
    server.answer = () => ({ ok: true })
    const second = startBridge(server.url, { outbox: outboxAt(path) })
    assert.deepEqual(second.outbox.pending().map((e) => e.envelope.id), ['event-1', 'event-3', 'event-5'])
    second.send(envelope(6))
    second.start()
    await until(() => second.connected, 'a connection')
    second.send(envelope(7))
    await until(() => second.outbox.size === 0, 'the outbox to drain')
    await sleep(30)
    assert.deepEqual(server.received.map((e) => e.id), ['event-1', 'event-3', 'event-5', 'event-6', 'event-7'])
    assert.deepEqual(server.received[0], { ...envelope(1, 'message', server.received[0]!.ts), attempt: 2 })
    // loaded from the file: a previous process may have sent them (attempt 2); new ones: 1
    assert.deepEqual(server.received.map((e) => e.attempt), [2, 2, 2, 1, 1])
    second.close()
    assert.equal(readFileSync(path, 'utf8'), '') // closed cleanly: compacted to nothing pending
  })

  it('keeps an event the server cannot take now (unavailable, unknown kind) for the next reconnect; drops forbidden ones', async () => {
    const server = await startServer()
    const nack = (kind: string) => ({ ok: false, error: { kind, name: 'ServerError', message: `said ${kind}` } })
    server.answer = (e, socket) => {
      if (socket !== server.sockets[0]) return { ok: true }
      if (e.id === 'event-2') return nack('unavailable')
      if (e.id === 'event-3') return nack('something-new')
      if (e.id === 'event-4') return nack('forbidden')
      return { ok: true }
    }
    const bridge = startBridge(server.url)
    bridge.start()
    await until(() => bridge.connected, 'a connection')
    for (let n = 1; n <= 4; n++) bridge.send(envelope(n))
    await until(() => bridge.stats.deferred === 2 && bridge.stats.rejected === 1, 'the answers')
    assert.deepEqual(bridge.outbox.pending().map((e) => e.envelope.id), ['event-2', 'event-3'])
    await sleep(100) // no immediate re-send (no spinning) ...
    bridge.send(envelope(5)) // ... and new events still flow
    await until(() => server.received.length === 5 && !bridge.outbox.has('event-5'), 'event 5')
    assert.deepEqual(server.received.map((e) => e.id), ['event-1', 'event-2', 'event-3', 'event-4', 'event-5'])

    server.sockets[0]!.conn.close()
    await until(() => bridge.outbox.size === 0, 'the kept events to be re-sent and acknowledged')
    await sleep(30)
    assert.deepEqual(server.received.map((e) => e.id).slice(5), ['event-2', 'event-3'])
  })

  it('leaves an event unacknowledged past the ack timeout for the next reconnect, and honours a late ack', async () => {
    const server = await startServer()
    let lateAck: (() => void) | undefined
    // First connection: event 1 is never answered, event 3 only late (by hand, below).
    server.answer = (e, socket) =>
      socket === server.sockets[0] && (e.id === 'event-1' || e.id === 'event-3') ? undefined : { ok: true }
    server.io.on('connection', (socket) => {
      socket.prependListener('event', (e: EventEnvelope, ack: (a: unknown) => void) => {
        if (e.id === 'event-3' && socket === server.sockets[0]) lateAck = () => ack({ ok: true })
      })
    })
    const bridge = startBridge(server.url, { ackTimeoutMs: 60 })
    bridge.start()
    await until(() => bridge.connected, 'a connection')
    for (let n = 1; n <= 3; n++) bridge.send(envelope(n))
    await until(() => bridge.stats.ackTimeouts === 2, 'two ack timeouts')
    await sleep(100)
    assert.deepEqual(server.received.map((e) => e.id), ['event-1', 'event-2', 'event-3']) // nothing re-sent yet
    assert.equal(bridge.stats.ackTimeouts, 2)
    lateAck!() // a slow handler finally finishes
    await until(() => !bridge.outbox.has('event-3'), 'the late ack')

    server.sockets[0]!.conn.close()
    await until(() => bridge.outbox.size === 0, 'event 1 re-sent and acknowledged')
    await sleep(30)
    assert.deepEqual(server.received.map((e) => e.id), ['event-1', 'event-2', 'event-3', 'event-1'])
  })

  it('never waits for slow acks before sending, nor re-sends while an ack is pending', async () => {
    const server = await startServer()
    server.io.on('connection', (socket) => {
      socket.prependListener('event', (_e: EventEnvelope, ack: (a: unknown) => void) => {
        setTimeout(() => ack({ ok: true }), 500) // "ack after the event was handled": a slow handler
      })
    })
    server.answer = () => undefined
    const bridge = startBridge(server.url, { ackTimeoutMs: 5_000 })
    bridge.start()
    await until(() => bridge.connected, 'a connection')
    for (let n = 1; n <= 50; n++) bridge.send(envelope(n))
    await until(() => server.received.length === 50, 'all 50 events')
    assert.equal(bridge.stats.acked, 0, 'all 50 were sent before the first ack came back')
    assert.equal(bridge.outbox.size, 50)
    await until(() => bridge.outbox.size === 0, 'the slow acks')
    assert.equal(server.received.length, 50)
    assert.equal(bridge.stats.resent, 0)
  })

  it('reconnects with exponential, capped, jittered delays while the server is down', async () => {
    const server = await startServer()
    const url = server.url
    await server.close()
    const bridge = startBridge(url, { reconnectDelayMs: 10, reconnectDelayMaxMs: 200, random: () => 1 })
    bridge.start()
    await until(() => bridge.retryDelays.length >= 7, 'seven retries', 5_000)
    assert.deepEqual(bridge.retryDelays.slice(0, 7), [10, 20, 40, 80, 160, 200, 200])
  })

  it('uses the same backoff after refusals and server-side disconnects', async () => {
    const server = await startServer()
    server.admit = (_auth, attempt) => (attempt <= 4 ? 'server busy' : null)
    const bridge = startBridge(server.url, { reconnectDelayMs: 10, reconnectDelayMaxMs: 1_000, random: () => 0 })
    bridge.start()
    await until(() => bridge.connected, 'a connection after four refusals')
    assert.deepEqual(bridge.retryDelays, [5, 10, 20, 40])
    server.sockets[0]!.disconnect(true) // "io server disconnect": Socket.IO alone would not come back
    await until(() => server.sockets.length === 2 && bridge.connected, 'a reconnect')
    // That connection was short (< the max delay): the sequence keeps climbing instead of hammering.
    assert.deepEqual(bridge.retryDelays, [5, 10, 20, 40, 80])
  })

  it('answers control requests exactly once, with errors as {ok: false}', async () => {
    const server = await startServer()
    let calls = 0
    const bridge = startBridge(server.url, {
      control: {
        handle: async (req) => {
          calls++
          if ((req as { action?: string })?.action === 'explode') throw new RangeError('kaboom')
          return { ok: true }
        },
      },
    })
    bridge.start()
    await until(() => bridge.connected, 'a connection')
    const socket = server.sockets[0]!
    assert.deepEqual(await socket.timeout(2000).emitWithAck('control', { action: 'restart-bot' }), { ok: true })
    const failed = await socket.timeout(2000).emitWithAck('control', { action: 'explode' })
    assert.equal(failed.ok, false)
    assert.deepEqual([failed.error.kind, failed.error.name, failed.error.message], ['runtime', 'RangeError', 'kaboom'])
    socket.emit('control', { action: 'restart-bot' }) // no ack callback: handled, nobody answered, no crash
    await until(() => calls === 3, 'the third call')

    const plain = startBridge(server.url)
    plain.start()
    await until(() => server.sockets.length === 2, 'a second connection')
    const none = await server.sockets[1]!.timeout(2000).emitWithAck('control', { action: 'restart-bot' })
    assert.equal(none.error.kind, 'bad_request')
  })

  it('adds the heartbeat payload hook to client heartbeats and survives it throwing', async () => {
    const server = await startServer()
    let beats = 0
    const bridge = startBridge(server.url, {
      heartbeatMs: 20,
      heartbeatPayload: () => {
        if (++beats === 1) throw new Error('first one fails')
        return { wechaty: { logged_in: true, alive: false, ding_ms: null } }
      },
    })
    bridge.start()
    await until(() => server.received.filter((e) => e.name === 'heartbeat').length >= 2, 'two heartbeats')
    const withHook = server.received.find((e) => e.name === 'heartbeat' && 'wechaty' in e.payload)!
    assert.deepEqual(withHook.payload.wechaty, { logged_in: true, alive: false, ding_ms: null })
    assert.equal(withHook.payload.source, 'client')
  })
})

describe('reconnectDelay', () => {
  it('doubles a ceiling from the base up to the cap and picks in its upper half', () => {
    const high = (n: number): number => reconnectDelay(n, 500, 5_000, () => 1)
    const low = (n: number): number => reconnectDelay(n, 500, 5_000, () => 0)
    assert.deepEqual([1, 2, 3, 4, 5, 6, 7].map(high), [500, 1000, 2000, 4000, 5000, 5000, 5000])
    assert.deepEqual([1, 2, 3, 4, 5, 6, 7].map(low), [250, 500, 1000, 2000, 2500, 2500, 2500])
    assert.equal(reconnectDelay(3, 500, 5_000, () => 0.5), 1500)
  })

  it('jitters: random draws spread over [ceiling/2, ceiling]', () => {
    const draws = Array.from({ length: 2000 }, () => reconnectDelay(4, 100, 10_000))
    assert.ok(draws.every((d) => d >= 400 && d <= 800))
    assert.ok(new Set(draws).size > 100, 'delays must differ')
    const mean = draws.reduce((a, b) => a + b, 0) / draws.length
    assert.ok(mean > 560 && mean < 640, `mean ${mean}`)
  })

  it('stays finite and positive for any attempt count (months of retrying)', () => {
    for (const n of [0, -3, 1.7, 1_000, 1_100, 1e9, Number.MAX_SAFE_INTEGER, Infinity, Number.NaN]) {
      for (const r of [0, 0.5, 0.999999]) {
        const d = reconnectDelay(n, 500, 5_000, () => r)
        assert.ok(Number.isFinite(d) && d >= 1 && d <= 5_000, `attempt ${n}, random ${r}: ${d}`)
      }
    }
    assert.equal(reconnectDelay(5_000, 500, 5_000, () => 0), 2500)
    assert.equal(reconnectDelay(1, 0, 0, () => 0), 1) // degenerate config: still never 0
  })
})
