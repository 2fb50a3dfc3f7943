/**
 * Runs a full garbage collection where the process was started with --expose-gc (the functions
 * are: serverless.yml), before onnxruntime allocates a model: buffers a download or a conversion
 * step left behind are then freed instead of adding to the peak. A no-op elsewhere.
 */
export function collectGarbage(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

/**
 * Runs a minor (young generation) collection where --expose-gc is on: about a millisecond,
 * enough to free the short-lived chunk buffers of a download. A no-op elsewhere.
 */
export function collectYoungGarbage(): void {
  (globalThis as { gc?: (options?: { type: 'minor' | 'major' }) => void }).gc?.({ type: 'minor' });
}
