import * as tf from '@tensorflow/tfjs-core';

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
export function tfjsKnowsClass(className: string): boolean {
  return className in tf.serialization.SerializationMap.getMap().classNameMap;
}
