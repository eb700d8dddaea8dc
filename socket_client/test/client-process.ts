/**
 * The real client process (src/main.ts) against a Socket.IO server standing in for the Python
 * one, which acknowledges every event and records it. Shared by the puppet tests.
 */
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Server, type Socket as ServerSocket } from 'socket.io'
import type { EventEnvelope } from '../src/protocol.js'
import { serveHandshake } from './handshake-server.js'
import { sleep } from './helpers.js'

export const clientDir = join(dirname(fileURLToPath(import.meta.url)), '..')

export interface StandIn {
  port: number
  envelopes: EventEnvelope[]
  sockets: ServerSocket[]
  named(name: string): EventEnvelope[]
  close(): Promise<void>
}

export async function standInServer(token = 'e2e-token-0123456789'): Promise<StandIn> {
  const http = createServer()
  const io = new Server(http)
  serveHandshake(io, { token })
  const envelopes: EventEnvelope[] = []
  const sockets: ServerSocket[] = []
  io.on('connection', (socket) => {
    sockets.push(socket)
    socket.on('event', (envelope: EventEnvelope, ack?: (a: unknown) => void) => {
      envelopes.push(envelope)
      if (typeof ack === 'function') ack({ ok: true })
    })
  })
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve))
  return {
    port: (http.address() as AddressInfo).port,
    envelopes,
    sockets,
    named: (name) => envelopes.filter((e) => e.name === name),
    close: () =>
      new Promise((resolve) => {
        io.close()
        http.close(() => resolve())
      }),
  }
}

export interface ClientProcess {
  child: ChildProcess
  /** Everything the client wrote to stderr so far. */
  log(): string
  exited(): Promise<number | string | null>
}

export function startClient(configPath: string, env: NodeJS.ProcessEnv = {}): ClientProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', '--config', configPath], {
    cwd: clientDir,
    env: { ...process.env, METAPUPPET_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  const chunks: string[] = []
  child.stderr!.on('data', (chunk: Buffer) => chunks.push(chunk.toString()))
  const exit = new Promise<number | string | null>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal)))
  return { child, log: () => chunks.join(''), exited: () => exit }
}

/** Generous limits: the machine is shared, and starting a client takes a few seconds there. */
export async function until(condition: () => boolean, what: string, log: () => string, timeoutMs = 40_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}; client log:\n${log().slice(-4000)}`)
    await sleep(20)
  }
}
