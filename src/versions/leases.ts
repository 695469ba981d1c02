// Served models and the leases on them. Each slice of the stream loop holds a
// lease on the model it started with, and so on that model's linker (and on
// the shadow candidate, if any), so a switch never changes the tagger or the
// linker under a slice; a replaced model is closed, with the linker it
// opened, when its last lease is released.

import type { LoadedModel } from '../model/model.js';
import type { EntityLinker } from '../pipeline/link.js';
import type { TaggingModel } from '../pipeline/tag.js';
import type { Entity } from '../pipeline/spans.js';

/** A model held for one slice: tag with `model`, link with `linker`; `shadow` (if any) gets a fraction of the records. */
export interface ModelLease {
  readonly model: TaggingModel;
  /** The served model's linker (its version stamps the slice's events); null: no linking. */
  readonly linker: EntityLinker | null;
  readonly shadow: ShadowRun | null;
  release(): void;
}

/** A slice's share of the shadow scoring (shadow.ts). */
export interface ShadowRun {
  /** True for the records to run in shadow (the configured fraction). */
  pick(): boolean;
  /** Tags `text` with the candidate and scores it against the live model's `entities`; never throws. */
  compare(text: string, entities: readonly Entity[]): Promise<void>;
}

export interface ModelProvider {
  acquire(): ModelLease;
}

/** A provider that always lends the same model and linker (tests); closing them stays with the caller. */
export const fixedModel = (model: TaggingModel, linker: EntityLinker | null = null): ModelProvider =>
  Object.freeze({ acquire: (): ModelLease => ({ model, linker, shadow: null, release: () => {} }) });

/** The `sha256` of the bundled default, which no archive has. */
export const DEFAULT_SHA = 'default';

/** A loaded model with a reference count: closed once it is retired and its last lease is released. */
export class ServedModel {
  readonly model: LoadedModel;
  /** Archive sha256, or DEFAULT_SHA. */
  readonly sha256: string;
  readonly #onCloseError: (e: unknown) => void;
  #refs = 0;
  #retired = false;
  #closed = false;

  constructor(model: LoadedModel, sha256: string, onCloseError: (e: unknown) => void) {
    this.model = model;
    this.sha256 = sha256;
    this.#onCloseError = onCloseError;
  }

  get version(): string {
    return this.model.version;
  }

  retain(): void {
    this.#refs++;
  }

  release(): void {
    this.#refs--;
    this.#closeIfUnused();
  }

  /** No new leases will be taken; closes now if none is held. */
  retire(): void {
    this.#retired = true;
    this.#closeIfUnused();
  }

  #closeIfUnused(): void {
    if (!this.#retired || this.#refs > 0 || this.#closed) return;
    this.#closed = true;
    this.model.close().catch(this.#onCloseError);
  }
}
