import { publishVersion } from '../../lib/registry/registry';
import { sha256Hex } from '../../lib/storage/hash';
import { ObjectStore } from '../../lib/storage/object-store';
import { describeModel, publishModel } from '../helpers/app';
import type { LocalS3 } from '../helpers/local-s3';
import { allTypesModel, colourClassifierModel, mlpModel } from '../helpers/models';
import { bertUncasedTokenizerJson, bertUncasedVocab, sentimentModel } from '../helpers/text';
import { MODELS } from './request-cases';

/**
 * Publishes every model the request generator aims at, as a conversion would (artifact, the
 * version's files, manifest, label): the plain ones, an image classifier and a text classifier
 * with their declarations (the text one with its tokenizer.json).
 */
export async function publishFuzzModels(s3: LocalS3): Promise<void> {
  await publishModel(s3, MODELS.mlp, 1, mlpModel(), { label: 'stable' });
  await publishModel(s3, MODELS.dyn, 1, mlpModel({ batch: 'N' }));
  await publishModel(s3, MODELS.types, 1, allTypesModel());
  const store = new ObjectStore(s3.client(), s3.bucket);
  const colours = colourClassifierModel();
  await publishVersion(
    store,
    {
      model: MODELS.image, version: 1, ...(await describeModel(colours)), evaluation: { passed: true }, conversion: { classLabels: ['red', 'green', 'blue'] },
      preprocess: { image: { type: 'image', scale: 1 / 255, maxPixels: 4_000_000 } }, postprocess: { logits: { type: 'classification', topK: 2 } },
    },
    colours,
    'stable',
  );
  const vocab = bertUncasedVocab();
  const tokenizer = bertUncasedTokenizerJson();
  const text = sentimentModel(vocab.length, new Map([[vocab.indexOf('good'), [0, 2]], [vocab.indexOf('bad'), [2, 0]]]), { sequence: 16 });
  await publishVersion(
    store,
    {
      model: MODELS.text, version: 1, ...(await describeModel(text)), evaluation: { passed: true }, conversion: { classLabels: ['negative', 'positive'] },
      preprocess: { text: { type: 'text', tokenizer: 'tokenizer.json', tokenizerSha256: sha256Hex(Buffer.from(tokenizer)) } },
      postprocess: { logits: { type: 'classification', topK: 1 } },
    },
    text,
    'stable',
    { 'tokenizer.json': Buffer.from(tokenizer) },
  );
}
