// Who is calling: a bearer token → its name and role, through the store (by hash only).
import type { Clock } from '../core/clock.ts';
import { StoreConflictError, type Store, type TokenRecord } from '../store/types.ts';
import type { Role } from './roles.ts';
import { generateToken, hashToken, isTokenShaped, newTokenId } from './tokens.ts';

export interface Identity {
  name: string;
  role: Role;
  /** absent with --no-auth */
  tokenId?: string;
  /** the token's hash, to see later whether it was revoked (long event streams) */
  tokenHash?: string;
}

/** last_used_at is written at most this often per token, not on every call */
const TOUCH_EVERY_MS = 60_000;
/**
 * A known token is looked up in the store at most this often: a revoke through this server
 * takes effect at once (it clears the cache), one through another scheduler sharing the store
 * within this. Unknown tokens are never cached, so guessing fills no memory.
 */
export const KNOWN_TOKEN_CACHE_MS = 2_000;

export class Authenticator {
  readonly #touched = new Map<string, number>();
  readonly #known = new Map<string, { record: TokenRecord; at: number }>();

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
  ) {}

  async identify(token: string): Promise<Identity | undefined> {
    if (!isTokenShaped(token)) return undefined;
    const hash = hashToken(token);
    const now = this.clock.now();
    const cached = this.#known.get(hash);
    let record = cached && now - cached.at < KNOWN_TOKEN_CACHE_MS ? cached.record : undefined;
    if (!record) {
      record = await this.store.findTokenByHash(hash);
      if (!record) {
        this.#known.delete(hash);
        return undefined;
      }
      this.#known.set(hash, { record, at: now });
    }
    const last = this.#touched.get(record.id) ?? record.lastUsedAt ?? 0;
    if (now - last >= TOUCH_EVERY_MS) {
      this.#touched.set(record.id, now);
      // Bookkeeping only: a failed write must not fail the call.
      await this.store.touchToken(record.id, now).catch(() => undefined);
    }
    return { name: record.name, role: record.role, tokenId: record.id, tokenHash: record.hash };
  }

  /** Revokes the token called `name`; false when there is none. Takes effect at once here. */
  async revoke(name: string): Promise<boolean> {
    const revoked = await this.store.revokeToken(name);
    for (const [hash, { record }] of this.#known) if (record.name === name) this.#known.delete(hash);
    return revoked;
  }

  /** A new token; the secret is in the answer only. StoreConflictError when the name is taken. */
  async create(name: string, role: Role, createdBy?: string): Promise<{ token: string; record: TokenRecord }> {
    const token = generateToken();
    const record: TokenRecord = {
      id: newTokenId(),
      name,
      role,
      hash: hashToken(token),
      createdAt: this.clock.now(),
      ...(createdBy !== undefined ? { createdBy } : {}),
    };
    await this.store.createToken(record);
    return { token, record };
  }
}

export { StoreConflictError };
