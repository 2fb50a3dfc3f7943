import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import type { ByteSource } from './wire';

const WINDOW_BYTES = 64 * 1024;

/**
 * A {@link ByteSource} over a file, read through a 64 KiB window with positional reads. Reading
 * a model's outline this way touches its headers only: tensor payloads are skipped, never read.
 */
export class FileSource implements ByteSource {
  readonly length: number;
  private readonly window = Buffer.allocUnsafe(WINDOW_BYTES);
  private windowStart = 0;
  private windowLength = 0;

  private constructor(private readonly fd: number) {
    this.length = fstatSync(fd).size;
  }

  /** Opens `path` and runs `use` with a source over it, closing the file afterwards. */
  static with<T>(path: string, use: (source: FileSource) => T): T {
    const fd = openSync(path, 'r');
    try {
      return use(new FileSource(fd));
    } finally {
      closeSync(fd);
    }
  }

  byteAt(pos: number): number {
    if (pos < this.windowStart || pos >= this.windowStart + this.windowLength) {
      this.windowStart = pos;
      this.windowLength = readSync(this.fd, this.window, 0, WINDOW_BYTES, pos);
      if (this.windowLength === 0) throw new RangeError(`read past the end of the file at ${pos}`);
    }
    return this.window[pos - this.windowStart] as number;
  }

  slice(start: number, end: number): Uint8Array {
    const out = Buffer.allocUnsafe(end - start);
    const read = readSync(this.fd, out, 0, out.length, start);
    return read === out.length ? out : out.subarray(0, read);
  }
}
