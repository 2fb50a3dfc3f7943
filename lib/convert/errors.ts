/** A model that cannot be converted, and why (reported, never retried). */
export class ConversionError extends Error {
  override readonly name = 'ConversionError';
}
