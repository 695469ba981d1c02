// Types of the two codec packages that ship none (used by adapter.ts only).

declare module 'kafkajs-snappy' {
  /** A kafkajs codec factory (Snappy via snappyjs; reads Xerial-framed batches too). */
  const codec: () => { compress(encoder: { buffer: Buffer }): Promise<Buffer>; decompress(buffer: Buffer): Promise<Buffer> };
  export default codec;
}

declare module 'lz4js' {
  /** One LZ4 frame (the format Kafka uses since message format v1). */
  export function compress(src: Uint8Array, maxSize?: number): Uint8Array;
  export function decompress(src: Uint8Array, maxSize?: number): Uint8Array;
}

declare module 'lz4js/xxh32.js' {
  /** xxHash32 of `src[index, index + length)`. */
  export function hash(seed: number, src: Uint8Array, index: number, length: number): number;
}
