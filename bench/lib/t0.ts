import { performance } from 'node:perf_hooks';

/**
 * The child script's reference point: imported first by every cold-start child, so esbuild
 * evaluates it before any other module of the bundle (and before any external package is
 * required). Milliseconds since the process's time origin.
 */
export const T0 = performance.now();
