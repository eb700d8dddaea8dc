/**
 * `toWire`: the one function that turns any snippet result (or event payload) into plain JSON.
 *
 * Wechaty objects become `{type, id, payload}`, FileBox becomes `{name, mimeType, base64}`,
 * bytes become base64, cycles, deep nesting, functions and symbols are cut, `undefined`
 * becomes `null`. The walk is synchronous; the few values that need I/O (FileBox contents,
 * a RoomInvitation's payload) are fetched afterwards in parallel, so plain values cost no
 * extra awaits.
 */
import { FileBox } from 'file-box'
import type { Json, JsonObject } from './protocol.js'

export const DEFAULT_MAX_JSON_BYTES = 64 * 1024 * 1024
export const MAX_DEPTH = 100

/** The result cannot be turned into JSON within the limits (size, unreadable FileBox, ...). */
export class SerializeError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'SerializeError'
  }
}

/** Returned by the walker for values that are dropped from objects (functions, symbols). */
const DROP: unique symbol = Symbol('drop')
type Walked = Json | typeof DROP

type Obj = Record<string, unknown>

/**
 * Converts `value` to plain JSON. Throws SerializeError when its JSON text would be larger than
 * `maxBytes` bytes of UTF-8 (what the server counts), or a FileBox cannot be read.
 *
 * The walk counts UTF-16 units as it goes (a unit is at least one byte, so it can stop early);
 * when the result could be over the cap in bytes (a unit is at most 6 bytes of JSON: `\u0001`),
 * the exact size is measured once at the end.
 */
export async function toWire(value: unknown, maxBytes: number = DEFAULT_MAX_JSON_BYTES): Promise<Json> {
  // Fast path: most exec results are primitives.
  switch (typeof value) {
    case 'string': {
      // Far too large: say so without measuring (that would copy it once more).
      if (value.length + 2 > 8 * maxBytes) throw tooLarge(maxBytes, value.length + 2, false)
      const text = wellFormed(value)
      if ((text.length + 2) * 6 > maxBytes) checkBytes(text, maxBytes)
      return text
    }
    case 'boolean':
      return value
    case 'number':
      return Number.isFinite(value) ? value : null
    case 'undefined':
      return null
  }
  if (value === null) return null
  const walker = new Walker(maxBytes)
  const out = walker.walk(value, 0)
  if (walker.pending.length > 0) await Promise.all(walker.pending)
  const result = out === DROP ? null : out
  if (walker.size * 6 > maxBytes) checkBytes(result, maxBytes)
  return result
}

/** Throws when the UTF-8 JSON of `value` is over `maxBytes`. */
function checkBytes(value: Json, maxBytes: number): void {
  const bytes = Buffer.byteLength(JSON.stringify(value))
  if (bytes > maxBytes) throw tooLarge(maxBytes, bytes, true)
}

/**
 * `text` with every lone UTF-16 surrogate replaced by U+FFFD. A chat message may carry one (a
 * cut emoji); JSON turns it into `\udXXX`, which Python reads as a string it cannot encode.
 */
export function wellFormed(text: string): string {
  const s = text as unknown as WellFormedString // ES2024, in Node since 20.0
  return s.isWellFormed() ? text : s.toWellFormed()
}

/** `value` with every string in it (keys too) well formed; the same object when nothing had to change. */
export function wellFormedDeep<T extends Json>(value: T): T {
  if (typeof value === 'string') return wellFormed(value) as T
  if (typeof value !== 'object' || value === null) return value
  if (Array.isArray(value)) {
    let out: Json[] | null = null
    value.forEach((item, i) => {
      const fixed = wellFormedDeep(item)
      if (fixed !== item) {
        out ??= [...value]
        out[i] = fixed
      }
    })
    return (out ?? value) as T
  }
  let out: JsonObject | null = null
  for (const [key, item] of Object.entries(value)) {
    const fixedKey = wellFormed(key)
    const fixed = wellFormedDeep(item)
    if (fixed !== item || fixedKey !== key) {
      out ??= { ...value }
      if (fixedKey !== key) delete out[key]
      out[fixedKey] = fixed
    }
  }
  return (out ?? value) as T
}

interface WellFormedString {
  isWellFormed(): boolean
  toWellFormed(): string
}

/** Names the size (exact, or how far the walk got before stopping) and the cap. */
function tooLarge(maxBytes: number, size: number, exact: boolean): SerializeError {
  const what = exact ? `is ${size} bytes (${humanBytes(size)})` : `is at least ${size} bytes (${humanBytes(size)})`
  return new SerializeError(
    `result is too large to send: its JSON ${what}, over the cap of ${maxBytes} bytes (${humanBytes(maxBytes)}); return less data, e.g. one page at a time`,
  )
}

function humanBytes(n: number): string {
  if (n < 1024) return `${n} B`
  const units = ['KiB', 'MiB', 'GiB', 'TiB']
  let value = n / 1024
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return `${Number(value.toFixed(1))} ${units[unit]}`
}

/** `WechatifiedContactSelfImpl` → `ContactSelf`; null when `o` is not a Wechaty user object. */
export function wechatyTypeOf(o: object): string | null {
  // `in` does not run the `wechaty` getter (which throws on un-wechatified classes).
  if (!('wechaty' in o) || !('id' in o || 'payload' in o)) return null
  const className = (o.constructor as { name?: unknown } | undefined)?.name
  const name = typeof className === 'string' ? className.replace(/^Wechatified/, '').replace(/Impl$/, '') : ''
  return name === '' ? 'Unknown' : name
}

class Walker {
  size = 0
  readonly pending: Promise<void>[] = []
  private readonly ancestors = new Set<object>()

  constructor(private readonly maxBytes: number) {}

  add(n: number): void {
    this.size += n
    if (this.size > this.maxBytes) throw tooLarge(this.maxBytes, this.size, false)
  }

  walk(v: unknown, depth: number): Walked {
    switch (typeof v) {
      case 'string':
        this.add(v.length + 2)
        return wellFormed(v)
      case 'number':
        this.add(8)
        return Number.isFinite(v) ? v : null
      case 'boolean':
        this.add(5)
        return v
      case 'bigint': {
        const s = v.toString()
        this.add(s.length + 2)
        return s
      }
      case 'undefined':
        this.add(4)
        return null
      case 'function':
      case 'symbol':
        return DROP
    }
    if (v === null) {
      this.add(4)
      return null
    }
    const o = v as object
    if (depth > MAX_DEPTH || this.ancestors.has(o)) {
      this.add(4)
      return null
    }
    this.ancestors.add(o)
    try {
      return this.walkObject(o, depth)
    } finally {
      this.ancestors.delete(o)
    }
  }

  private base64(bytes: Uint8Array): string {
    const s = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64')
    this.add(s.length + 2)
    return s
  }

  private walkObject(o: object, depth: number): Json {
    if (Array.isArray(o)) {
      this.add(2)
      const out: Json[] = new Array(o.length)
      for (let i = 0; i < o.length; i++) {
        const item = this.walk(o[i], depth + 1)
        out[i] = item === DROP ? null : item
        this.add(1)
      }
      return out
    }
    if (o instanceof Uint8Array) return this.base64(o)
    if (o instanceof ArrayBuffer) return this.base64(new Uint8Array(o))
    if (ArrayBuffer.isView(o)) {
      if (o instanceof DataView) return this.base64(new Uint8Array(o.buffer, o.byteOffset, o.byteLength))
      return this.walkObject(Array.from(o as unknown as ArrayLike<number | bigint>), depth)
    }
    if (o instanceof Date) {
      const t = o.getTime()
      if (Number.isNaN(t)) return null
      this.add(26)
      return o.toISOString()
    }
    if (FileBox.valid(o)) return this.fileBox(o as FileBox)
    const wechatyType = wechatyTypeOf(o)
    if (wechatyType !== null) return this.wechatyObject(o as Obj, wechatyType, depth)
    if (o instanceof Error) {
      return this.walkObject({ name: o.name, message: o.message, stack: o.stack ?? null }, depth)
    }
    if (o instanceof Map) {
      const out: JsonObject = {}
      this.add(2)
      for (const [key, value] of o) {
        const item = this.walk(value, depth + 1)
        if (item === DROP) continue
        const k = wellFormed(typeof key === 'string' ? key : String(key))
        this.add(k.length + 4)
        out[k] = item
      }
      return out
    }
    if (o instanceof Set) return this.walkObject([...o], depth)
    if (o instanceof RegExp) {
      const s = String(o)
      this.add(s.length + 2)
      return s
    }
    const proto: unknown = Object.getPrototypeOf(o)
    if (proto !== Object.prototype && proto !== null) {
      let toJSON: unknown
      try {
        toJSON = (o as Obj).toJSON
      } catch {
        toJSON = undefined
      }
      if (typeof toJSON === 'function') {
        let converted: unknown
        try {
          converted = toJSON.call(o)
        } catch {
          converted = undefined
        }
        if (converted !== o && converted !== undefined) {
          const item = this.walk(converted, depth + 1)
          return item === DROP ? null : item
        }
      }
    }
    return this.plainObject(o as Obj, depth)
  }

  private plainObject(o: Obj, depth: number): JsonObject {
    const out: JsonObject = {}
    this.add(2)
    for (const rawKey of Object.keys(o)) {
      const key = wellFormed(rawKey)
      let value: unknown
      try {
        value = o[rawKey]
      } catch {
        continue // a throwing getter: leave the key out
      }
      const item = this.walk(value, depth + 1)
      if (item === DROP) continue
      this.add(key.length + 4)
      out[key] = item
    }
    return out
  }

  private fileBox(box: FileBox): JsonObject {
    let mimeType: string | null = null
    try {
      mimeType = box.mediaType || null
    } catch {
      mimeType = null
    }
    const out: JsonObject = { name: box.name, mimeType, base64: '' }
    this.add(box.name.length + (mimeType?.length ?? 4) + 40)
    this.pending.push(
      box.toBase64().then(
        (b64) => {
          this.add(b64.length)
          out.base64 = b64
        },
        (e: unknown) => {
          if (e instanceof SerializeError) throw e
          throw new SerializeError(`cannot read FileBox ${JSON.stringify(box.name)}: ${e instanceof Error ? e.message : String(e)}`)
        },
      ),
    )
    return out
  }

  private wechatyObject(o: Obj, type: string, depth: number): JsonObject {
    let id: Json = null
    let payload: unknown
    try {
      id = typeof o.id === 'string' ? o.id : null
      payload = o.payload
    } catch {
      payload = undefined
    }
    this.add(type.length + (id?.length ?? 4) + 30)
    const out: JsonObject = { type, id, payload: null }
    if (payload !== undefined) {
      const item = this.walk(payload, depth + 1)
      out.payload = item === DROP ? null : item
    } else if (type === 'RoomInvitation' && id !== null) {
      // RoomInvitation keeps no payload of its own: ask the puppet (best effort).
      const puppet = (o.wechaty as { puppet?: { roomInvitationPayload?: (id: string) => Promise<unknown> } } | undefined)?.puppet
      if (puppet?.roomInvitationPayload !== undefined) {
        const roomInvitationId = id
        this.pending.push(
          puppet.roomInvitationPayload(roomInvitationId).then(
            (p) => {
              const item = this.walk(p, depth + 1)
              out.payload = item === DROP ? null : item
            },
            () => {},
          ),
        )
      }
    }
    return out
  }
}
