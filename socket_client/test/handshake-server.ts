/**
 * The server's half of the handshake (protocol.ts), for the Socket.IO servers that stand in for
 * the Python one in these tests. `impostor` makes a server that accepts any key and cannot
 * prove it holds the token: what a program that took over the port would be.
 */
import type { Server, Socket as ServerSocket } from 'socket.io'
import {
  WIRE,
  clientProof,
  keyId,
  newNonce,
  proofMatches,
  serverProof,
  type AuthAck,
  type Handshake,
} from '../src/protocol.js'

export interface HandshakeOptions {
  /** The token this server holds. */
  token: string
  /** Accept any key and send a proof made without the token (`true`: 64 zeros; a string: that token). */
  impostor?: boolean | string
  /** Another refusal for a connection attempt (e.g. 'server busy'); null admits it. */
  admit?: (auth: Record<string, unknown>, attempt: number) => string | null
  /** The answer to a valid `authenticate` (default `{ok: true, ...}`); undefined answers nothing. */
  answer?: (socket: ServerSocket) => AuthAck | undefined
  /** Do not send the challenge at all. */
  silent?: boolean
}

export interface HandshakeServer {
  /** Sockets that completed the handshake. */
  authenticated: Set<ServerSocket>
  /** `authenticate` messages received, valid or not. */
  proofs: unknown[]
  /** Connection attempts seen by the middleware. */
  attempts: () => number
}

export function serveHandshake(io: Server, options: HandshakeOptions): HandshakeServer {
  const state: HandshakeServer = { authenticated: new Set(), proofs: [], attempts: () => attempts }
  let attempts = 0
  io.use((socket, next) => {
    const auth = socket.handshake.auth as Record<string, unknown>
    const refusal = options.admit?.(auth, ++attempts) ?? null
    if (refusal !== null) return next(new Error(refusal))
    const nonce = typeof auth.nonce === 'string' ? auth.nonce : ''
    if (!options.impostor && !proofMatches(keyId(options.token, nonce), auth.key)) return next(new Error('invalid token'))
    next()
  })
  io.on('connection', (socket) => {
    const auth = socket.handshake.auth as Record<string, unknown>
    const handshake: Handshake = {
      role: auth.role === 'web' ? 'web' : 'puppet',
      bot: typeof auth.bot === 'string' ? auth.bot : null,
      clientNonce: typeof auth.nonce === 'string' ? auth.nonce : '',
      serverNonce: newNonce(),
      replace: auth.replace === true,
    }
    const fake = typeof options.impostor === 'string' ? serverProof(options.impostor, handshake) : '0'.repeat(64)
    if (!options.silent) {
      socket.emit(WIRE.challenge, {
        nonce: handshake.serverNonce,
        proof: options.impostor ? fake : serverProof(options.token, handshake),
      })
    }
    socket.on(WIRE.authenticate, (data: unknown, ack?: (a: AuthAck) => void) => {
      state.proofs.push(data)
      const proof = (data as { proof?: unknown } | null)?.proof
      if (!proofMatches(clientProof(options.token, handshake), proof)) {
        ack?.({ ok: false, error: { kind: 'forbidden', name: 'ProtocolError', message: 'invalid proof' } })
        socket.disconnect(true)
        return
      }
      const answer = options.answer ? options.answer(socket) : { ok: true as const, role: handshake.role, bot: handshake.bot }
      if (answer === undefined) return
      if (answer.ok) state.authenticated.add(socket)
      ack?.(answer)
      if (!answer.ok) socket.disconnect(true)
    })
  })
  return state
}
