// The model topic in memory, for the tests of the model-version layer.

import type { InputMessage, ModelTopicClient, TailOptions } from '../../src/kafka/port.js';
import { type ModelTopicRecord, keyOf, modelSchema, toAvro } from '../../src/versions/catalog.js';

/** The model topic in memory: one partition, records delivered to the tail as they are written. */
export class FakeModelTopic implements ModelTopicClient {
  readonly log: InputMessage[] = [];
  exists = true;
  tails = 0;
  #tail: TailOptions | null = null;
  async missingTopics(topics: readonly string[]): Promise<string[]> {
    return this.exists ? [] : [...topics];
  }
  /** The reader dies (broker gone); records written meanwhile reach no one. */
  crash(): void {
    const tail = this.#tail;
    this.#tail = null;
    tail?.onCrash(new Error('connection lost'));
  }
  async createTopics(): Promise<void> {}
  async endOffsets(): Promise<Record<number, string>> {
    return { 0: String(this.log.length) };
  }
  async tail(_topic: string, options: TailOptions) {
    this.tails++;
    this.#tail = options;
    await options.onMessages([...this.log]);
    return { stop: async () => void (this.#tail = null) };
  }
  async produceEach(): Promise<void> {}
  async write(records: readonly ModelTopicRecord[], corrupt?: (r: ModelTopicRecord) => ModelTopicRecord): Promise<void> {
    const msgs = records.map((r): InputMessage => ({
      topic: 't',
      partition: 0,
      offset: String(this.log.length),
      key: Buffer.from(keyOf(r)),
      value: modelSchema().type.toBuffer(toAvro(corrupt?.(r) ?? r)),
      headers: {},
      timestamp: Date.now(),
    })).map((m, i) => ({ ...m, offset: String(this.log.length + i) }));
    this.log.push(...msgs);
    await this.#tail?.onMessages(msgs);
  }
}

