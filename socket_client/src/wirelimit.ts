/**
 * The largest frame the server accepts, counted the way the server counts it: bytes of one
 * encoded Socket.IO frame (the WebSocket message `42<ack id>["event",{...}]` or the ack
 * `43<ack id>[{...}]`).
 *
 * The Python server's `server.max_message_bytes` is python-engineio's `max_http_buffer_size`,
 * which aiohttp applies to every WebSocket message (a message of that size or more closes the
 * connection). Engine.IO announces it in its handshake as `maxPayload`; the bridge reads it at
 * every connect (`learn`). Until the first handshake the limit is `server.max_message_bytes`
 * from config.json (default 64 MiB, the Python default).
 */

export const DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024

/**
 * Bytes a frame adds around the JSON of its payload: `4` (Engine.IO message), `2`/`3` (Socket.IO
 * event/ack), the ack id (up to 20 digits), `["event",` ... `]` or `[{"ok":true,"result":` ... `}]`.
 * 64 covers all of them.
 */
export const FRAME_OVERHEAD_BYTES = 64

export class WireLimit {
  /** Where the current value comes from. */
  source: 'config' | 'handshake' = 'config'

  constructor(private current: number = DEFAULT_MAX_FRAME_BYTES) {}

  /** The server's limit in bytes: a frame of this size or more is refused. */
  get bytes(): number {
    return this.current
  }

  /** Takes the limit announced by the server (Engine.IO `maxPayload`); ignores nonsense. */
  learn(maxPayload: unknown): boolean {
    if (typeof maxPayload !== 'number' || !Number.isSafeInteger(maxPayload) || maxPayload < 1024) return false
    this.current = maxPayload
    this.source = 'handshake'
    return true
  }

  /** The most bytes of JSON one payload may have to fit in a frame. */
  get maxJsonBytes(): number {
    return this.current - FRAME_OVERHEAD_BYTES
  }

  /** True when a payload whose JSON has `jsonBytes` bytes cannot be sent in one frame. */
  tooLarge(jsonBytes: number): boolean {
    return jsonBytes >= this.maxJsonBytes
  }

  describe(): string {
    return `${this.current} bytes (${this.source === 'handshake' ? "announced by the server" : 'server.max_message_bytes'})`
  }
}
