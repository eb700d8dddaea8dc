/**
 * The real client process (src/main.ts, mock puppet) against a Socket.IO server standing in for
 * the Python one: SIGKILL with unacknowledged events and a restart from the outbox file, the
 * heartbeat's Wechaty liveness (and a silent stall), control restart-bot, SIGTERM.
 */
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { after, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { Server, type Socket as ServerSocket } from 'socket.io'
import type { EventEnvelope } from '../src/protocol.js'
import { serveHandshake } from './handshake-server.js'
import { sleep } from './helpers.js'

const clientDir = join(dirname(fileURLToPath(import.meta.url)), '..')
const dir = mkdtempSync(join(tmpdir(), 'metapuppet-main-'))
const children: ChildProcess[] = []
const cleanups: Array<() => unknown> = []
after(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  for (const cleanup of cleanups) await cleanup()
  rmSync(dir, { recursive: true, force: true })
})

interface Received {
  socket: ServerSocket
  envelope: EventEnvelope
}

/** stderr of the client processes, shown when a wait times out. */
const output: string[] = []

/** Generous limits: starting the client (tsx + wechaty) takes ~1.5 s, many times that on a busy machine. */
async function until(condition: () => boolean, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}; client log:\n${output.join('').slice(-3000)}`)
    await sleep(10)
  }
}

function startClient(configPath: string, output: string[]): ChildProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', '--config', configPath], {
    cwd: clientDir,
    env: { ...process.env, METAPUPPET_LOG_LEVEL: 'debug' },
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  child.stderr!.on('data', (chunk: Buffer) => output.push(chunk.toString()))
  children.push(child)
  return child
}

const exited = (child: ChildProcess): Promise<number | string | null> =>
  child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve(child.exitCode ?? child.signalCode)
    : new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal)))

it('survives SIGKILL with unacknowledged events, reports liveness, restarts its bot, stops on SIGTERM', { timeout: 240_000 }, async () => {
  const http = createServer()
  const io = new Server(http)
  serveHandshake(io, { token: 'e2e-token-0123456789' })
  cleanups.push(() => new Promise((resolve) => { io.close(); http.close(resolve) }))
  const received: Received[] = []
  let acking = false
  const sockets: ServerSocket[] = []
  io.on('connection', (socket) => {
    sockets.push(socket)
    socket.on('event', (envelope: EventEnvelope, ack: (a: unknown) => void) => {
      received.push({ socket, envelope })
      if (acking && typeof ack === 'function') ack({ ok: true })
    })
  })
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve))
  const port = (http.address() as AddressInfo).port

  const configPath = join(dir, 'config.json')
  writeFileSync(configPath, JSON.stringify({
    server: { host: '127.0.0.1', port, token: 'e2e-token-0123456789' },
    client: { bot: 'e2e', heartbeat_ms: 200, stall_probe_timeout_ms: 2_000, outbox_path: 'state/outbox.jsonl' },
    puppet: { name: 'wechaty-puppet-mock' },
    mock: { user_name: 'E2E Bot' },
  }))
  const outboxPath = join(dir, 'state', 'outbox.jsonl')
  const events = (socket: ServerSocket, name: string): EventEnvelope[] =>
    received.filter((r) => r.socket === socket && r.envelope.name === name).map((r) => r.envelope)

  // 1. First process: nothing is acknowledged; five messages arrive; then SIGKILL.
  const first = startClient(configPath, output)
  await until(() => sockets.length === 1 && events(sockets[0]!, 'login').length === 1, 'the first login')
  const said = await sockets[0]!.timeout(20_000).emitWithAck('exec', {
    code: 'const alice = mock.contact("Alice"); return args.texts.map((text: string) => mock.say(alice, { text }, null))',
    args: { texts: ['one', 'two', 'three', 'four', 'five'] },
  })
  assert.equal(said.ok, true, JSON.stringify(said))
  const messageIds = said.result as string[]
  await until(() => events(sockets[0]!, 'message').length === 5, 'five messages')
  const firstLogin = events(sockets[0]!, 'login')[0]!
  // heartbeats report the outbox's depth (Python's /metrics): nothing was acknowledged yet
  const depth = (b: EventEnvelope): { pending: number; bytes: number } | undefined =>
    b.payload.outbox as { pending: number; bytes: number } | undefined
  await until(() => events(sockets[0]!, 'heartbeat').some((b) => depth(b)?.pending === 6), 'a heartbeat with six pending')
  assert.ok(events(sockets[0]!, 'heartbeat').every((b) => (depth(b)?.bytes ?? 0) >= 0))
  first.kill('SIGKILL')
  assert.equal(await exited(first), 'SIGKILL')
  assert.equal(readFileSync(outboxPath, 'utf8').trim().split('\n').length, 6) // login + 5 messages, no acks

  // 2. Second process, same outbox file, the server now acknowledges: the six events come first, once, in order.
  acking = true
  const second = startClient(configPath, output)
  await until(() => sockets.length === 2 && events(sockets[1]!, 'login').length === 2, 'the replay and the new login')
  const replayed = received.filter((r) => r.socket === sockets[1] && r.envelope.name !== 'heartbeat').map((r) => r.envelope)
  assert.deepEqual(replayed.slice(0, 6).map((e) => e.id), [firstLogin.id, ...events(sockets[0]!, 'message').map((e) => e.id)])
  assert.deepEqual(replayed.slice(1, 6).map((e) => e.payload.id), messageIds)
  assert.deepEqual(replayed.slice(1, 6).map((e) => e.payload.text), ['one', 'two', 'three', 'four', 'five'])
  assert.equal(new Set(replayed.map((e) => e.id)).size, replayed.length, 'no event twice')

  // 3. Heartbeats carry the Wechaty liveness; stubbing ding simulates a silent stall.
  const beats = (): EventEnvelope[] => events(sockets[1]!, 'heartbeat')
  await until(() => beats().some((b) => (b.payload.wechaty as { ding_ms: unknown } | undefined)?.ding_ms != null), 'a measured ding')
  const healthy = beats().find((b) => (b.payload.wechaty as { ding_ms: unknown }).ding_ms != null)!
  assert.equal(healthy.payload.source, 'client')
  assert.ok((depth(healthy)?.pending ?? -1) >= 0) // present in every client heartbeat
  assert.equal(typeof healthy.payload.uptime_s, 'number')
  const wechaty = healthy.payload.wechaty as { logged_in: boolean; alive: boolean; ding_ms: number }
  assert.deepEqual([wechaty.logged_in, wechaty.alive], [true, true])
  assert.ok(wechaty.ding_ms >= 900 && wechaty.ding_ms < 2_000, `ding_ms ${wechaty.ding_ms}`)
  const stub = await sockets[1]!.timeout(20_000).emitWithAck('exec', { code: 'bot.puppet.ding = () => {}' })
  assert.equal(stub.ok, true)
  const stubbedAt = Date.now()
  // Within ~3 s: the probe already in flight still gets its dong, the next one times out after 2 s.
  await until(() => beats().some((b) => b.ts > stubbedAt && (b.payload.wechaty as { alive: boolean }).alive === false), 'alive: false')

  // 4. control restart-bot: logout, then the mock user logs in again.
  const restart = await sockets[1]!.timeout(20_000).emitWithAck('control', { action: 'restart-bot' })
  assert.deepEqual(restart, { ok: true })
  await until(() => events(sockets[1]!, 'login').length === 3, 'the login after the restart')
  assert.equal(events(sockets[1]!, 'logout').length, 1)
  const unknown = await sockets[1]!.timeout(20_000).emitWithAck('control', { action: 'fly' })
  assert.equal(unknown.error.kind, 'bad_request')

  // 5. SIGTERM: clean exit; everything was acknowledged, so the compacted file is empty.
  second.kill('SIGTERM')
  assert.equal(await exited(second), 0, output.join(''))
  assert.equal(events(sockets[1]!, 'logout').length, 2)
  assert.equal(readFileSync(outboxPath, 'utf8'), '')
  assert.ok(!output.join('').includes('e2e-token-0123456789'), 'the token must never be logged')
})
