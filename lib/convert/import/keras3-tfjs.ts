import * as tf from '@tensorflow/tfjs-core';
import { MODEL_CLASSES } from './keras-model';
import { isObject, type Json } from './keras3-config';

// What TF.js needs to run a `.keras` model as Keras defines it, for the export fidelity check, and
// what it cannot run.

/**
 * The TF.js activation name under which Keras 3's `hard_sigmoid`, clip(x/6 + 0.5, 0, 1), is
 * registered. TF.js's own `hardSigmoid` is Keras 2's clip(0.2x + 0.5, 0, 1), so a Keras 3 model
 * handed to TF.js for the fidelity check names this one instead. No underscore: TF.js camel-cases
 * the activation names it reads.
 */
export const KERAS3_HARD_SIGMOID = 'keras3HardSigmoid';

class Keras3HardSigmoid extends tf.serialization.Serializable {
  static readonly className = KERAS3_HARD_SIGMOID;

  override getConfig(): tf.serialization.ConfigDict {
    return {};
  }

  apply(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => tf.clipByValue(tf.add(tf.div(x, 6), 0.5), 0, 1));
  }
}
tf.serialization.registerClass(Keras3HardSigmoid);

/** Whether TF.js (layers and activations registered in this process) knows the class name. */
function tfjsKnowsClass(className: string): boolean {
  return className in tf.serialization.SerializationMap.getMap().classNameMap;
}

/** The same config for TF.js: Keras 3 activations it lacks under the names that compute them. */
export function tfjsConfig(v: unknown, kerasMajor: number): unknown {
  if (Array.isArray(v)) return v.map((x) => tfjsConfig(x, kerasMajor));
  if (!isObject(v)) return v;
  const out: Json = {};
  for (const [k, x] of Object.entries(v)) {
    if ((k === 'activation' || k === 'recurrent_activation') && typeof x === 'string') {
      if (kerasMajor >= 3 && (x === 'hard_sigmoid' || x === 'hardSigmoid')) out[k] = KERAS3_HARD_SIGMOID;
      else out[k] = x === 'silu' ? 'swish' : x;
    } else out[k] = tfjsConfig(x, kerasMajor);
  }
  return out;
}

function camel(s: string): string {
  return s.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** Why TF.js cannot run this model as Keras defines it, or undefined when it can. */
export function tfjsGap(config: unknown): string | undefined {
  const gaps: string[] = [];
  const visit = (v: unknown): void => {
    if (Array.isArray(v)) return v.forEach(visit);
    if (!isObject(v)) return;
    if (typeof v.class_name === 'string' && isObject(v.config)) {
      const c = v.config;
      const name = typeof v.name === 'string' ? v.name : String(c.name);
      if (!MODEL_CLASSES.has(v.class_name) && !tfjsKnowsClass(v.class_name)) gaps.push(`TF.js has no ${v.class_name} layer ("${name}")`);
      if (v.class_name === 'GRU' && c.reset_after === true) gaps.push(`TF.js cannot build GRU "${name}" with reset_after=true (the Keras 3 default)`);
      if (typeof c.groups === 'number' && c.groups > 1) gaps.push(`TF.js has no grouped convolution ("${name}", groups=${c.groups})`);
      for (const key of ['activation', 'recurrent_activation']) {
        const a = c[key];
        if (typeof a === 'string' && !tfjsKnowsClass(a) && !tfjsKnowsClass(camel(a))) gaps.push(`TF.js has no activation "${a}" ("${name}")`);
      }
    }
    Object.values(v).forEach(visit);
  };
  visit(config);
  return gaps.length ? [...new Set(gaps)].join('; ') : undefined;
}
