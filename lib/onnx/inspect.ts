import { WIRE_LEN, WIRE_VARINT, WireFormatError, WireReader, type ByteSource } from './wire';

/** A graph input or output as the ONNX file declares it. */
export interface DeclaredValue {
  name: string;
  /** `tensor` with its element type, or another ONNX value kind (sequence, map, ...). */
  kind: 'tensor' | 'sequence' | 'map' | 'optional' | 'sparse_tensor' | 'unknown';
  /** ONNX `TensorProto.DataType`; 0 when not a tensor or not declared. */
  elemType: number;
  /** Dimension sizes; a symbolic or missing dimension is -1. Undefined when the rank is unknown. */
  shape?: number[];
}

/** What the inference path needs to know about a model before handing it to onnxruntime. */
export interface ModelOutline {
  irVersion: number;
  opsets: { domain: string; version: number }[];
  inputs: DeclaredValue[];
  outputs: DeclaredValue[];
  /** Initializer names (graph inputs that are also initializers are overridable constants). */
  initializers: string[];
  /** Tensors anywhere in the model (subgraphs included) whose data lives in external files. */
  externalTensors: string[];
}

// Field numbers from onnx.proto.
const MODEL = { irVersion: 1, opsetImport: 8, graph: 7, trainingInfo: 20, functions: 25 } as const;
const TRAINING_INFO = { initialization: 1, algorithm: 2 } as const;
const FUNCTION = { node: 7, attributeProto: 11 } as const;
const OPSET = { domain: 1, version: 2 } as const;
const GRAPH = { node: 1, initializer: 5, input: 11, output: 12, sparseInitializer: 15 } as const;
const NODE = { attribute: 5 } as const;
const ATTRIBUTE = { t: 5, g: 6, tensors: 10, graphs: 11, sparseTensor: 22, sparseTensors: 23 } as const;
const VALUE_INFO = { name: 1, type: 2 } as const;
const TYPE = { tensor: 1, sequence: 4, map: 5, sparseTensor: 8, optional: 9 } as const;
const TENSOR_TYPE = { elemType: 1, shape: 2 } as const;
const SHAPE = { dim: 1 } as const;
const DIM = { value: 1 } as const;
const TENSOR = { name: 8, externalData: 13, dataLocation: 14 } as const;
const SPARSE_TENSOR = { values: 1, indices: 2 } as const;
const DATA_LOCATION_EXTERNAL = 1;
const MAX_GRAPH_DEPTH = 64;

/**
 * Reads a model's declared interface without onnxruntime: IR version, opsets, graph inputs and
 * outputs with their types, initializer names, and any tensors stored as external data (in any
 * subgraph, model-local function or training-info graph: onnxruntime inlines functions, so their
 * Constant nodes load external data too). Tensor payloads are skipped, not copied, so this is
 * cheap on large models.
 * Throws {@link WireFormatError} for bytes that are not an ONNX model.
 */
export function outlineModel(bytes: Uint8Array | ByteSource): ModelOutline {
  const outline: ModelOutline = { irVersion: 0, opsets: [], inputs: [], outputs: [], initializers: [], externalTensors: [] };
  const r = new WireReader(bytes);
  let sawGraph = false;
  while (!r.done) {
    const f = r.tag();
    if (f.number === MODEL.irVersion && f.wireType === WIRE_VARINT) outline.irVersion = r.varint();
    else if (f.number === MODEL.opsetImport && f.wireType === WIRE_LEN) outline.opsets.push(readOpset(r.message()));
    else if (f.number === MODEL.graph && f.wireType === WIRE_LEN) {
      readGraph(r.message(), outline, 0, true);
      sawGraph = true;
    } else if (f.number === MODEL.functions && f.wireType === WIRE_LEN) readFunction(r.message(), outline);
    else if (f.number === MODEL.trainingInfo && f.wireType === WIRE_LEN) readTrainingInfo(r.message(), outline);
    else r.skip(f.wireType);
  }
  if (!sawGraph) throw new WireFormatError('no graph in the model');
  return outline;
}

/** A model-local function: its nodes and default attributes may hold tensors (external ones included). */
function readFunction(r: WireReader, outline: ModelOutline): void {
  while (!r.done) {
    const f = r.tag();
    if (f.number === FUNCTION.node && f.wireType === WIRE_LEN) readNode(r.message(), outline, 1);
    else if (f.number === FUNCTION.attributeProto && f.wireType === WIRE_LEN) readAttribute(r.message(), outline, 1);
    else r.skip(f.wireType);
  }
}

function readTrainingInfo(r: WireReader, outline: ModelOutline): void {
  while (!r.done) {
    const f = r.tag();
    if ((f.number === TRAINING_INFO.initialization || f.number === TRAINING_INFO.algorithm) && f.wireType === WIRE_LEN) {
      readGraph(r.message(), outline, 1, false);
    } else r.skip(f.wireType);
  }
}

function readOpset(r: WireReader): { domain: string; version: number } {
  const opset = { domain: '', version: 0 };
  while (!r.done) {
    const f = r.tag();
    if (f.number === OPSET.domain && f.wireType === WIRE_LEN) opset.domain = r.string();
    else if (f.number === OPSET.version && f.wireType === WIRE_VARINT) opset.version = r.varint();
    else r.skip(f.wireType);
  }
  return opset;
}

function readGraph(r: WireReader, outline: ModelOutline, depth: number, main: boolean): void {
  if (depth > MAX_GRAPH_DEPTH) throw new WireFormatError(`subgraphs nested deeper than ${MAX_GRAPH_DEPTH}`);
  while (!r.done) {
    const f = r.tag();
    if (f.wireType !== WIRE_LEN) {
      r.skip(f.wireType);
      continue;
    }
    switch (f.number) {
      case GRAPH.input:
        if (main) outline.inputs.push(readValueInfo(r.message()));
        else r.skip(f.wireType);
        break;
      case GRAPH.output:
        if (main) outline.outputs.push(readValueInfo(r.message()));
        else r.skip(f.wireType);
        break;
      case GRAPH.initializer: {
        const name = readTensor(r.message(), outline);
        if (main) outline.initializers.push(name);
        break;
      }
      case GRAPH.sparseInitializer:
        readSparseTensor(r.message(), outline);
        break;
      case GRAPH.node:
        readNode(r.message(), outline, depth);
        break;
      default:
        r.skip(f.wireType);
    }
  }
}

function readNode(r: WireReader, outline: ModelOutline, depth: number): void {
  while (!r.done) {
    const f = r.tag();
    if (f.number !== NODE.attribute || f.wireType !== WIRE_LEN) {
      r.skip(f.wireType);
      continue;
    }
    readAttribute(r.message(), outline, depth);
  }
}

function readAttribute(a: WireReader, outline: ModelOutline, depth: number): void {
  while (!a.done) {
    const af = a.tag();
    if (af.wireType !== WIRE_LEN) a.skip(af.wireType);
    else if (af.number === ATTRIBUTE.t || af.number === ATTRIBUTE.tensors) readTensor(a.message(), outline);
    else if (af.number === ATTRIBUTE.g || af.number === ATTRIBUTE.graphs) readGraph(a.message(), outline, depth + 1, false);
    else if (af.number === ATTRIBUTE.sparseTensor || af.number === ATTRIBUTE.sparseTensors) readSparseTensor(a.message(), outline);
    else a.skip(af.wireType);
  }
}

/** Returns the tensor's name and records it if its data is external. */
function readTensor(r: WireReader, outline: ModelOutline): string {
  let name = '';
  let external = false;
  while (!r.done) {
    const f = r.tag();
    if (f.number === TENSOR.name && f.wireType === WIRE_LEN) name = r.string();
    else if (f.number === TENSOR.dataLocation && f.wireType === WIRE_VARINT) {
      const location = r.varint(); // read it unconditionally: the reader must move past it
      if (location === DATA_LOCATION_EXTERNAL) external = true;
    } else if (f.number === TENSOR.externalData && f.wireType === WIRE_LEN) {
      external = true;
      r.skip(f.wireType);
    } else r.skip(f.wireType);
  }
  if (external) outline.externalTensors.push(name);
  return name;
}

function readSparseTensor(r: WireReader, outline: ModelOutline): void {
  while (!r.done) {
    const f = r.tag();
    if ((f.number === SPARSE_TENSOR.values || f.number === SPARSE_TENSOR.indices) && f.wireType === WIRE_LEN) {
      readTensor(r.message(), outline);
    } else r.skip(f.wireType);
  }
}

function readValueInfo(r: WireReader): DeclaredValue {
  const value: DeclaredValue = { name: '', kind: 'unknown', elemType: 0 };
  while (!r.done) {
    const f = r.tag();
    if (f.number === VALUE_INFO.name && f.wireType === WIRE_LEN) value.name = r.string();
    else if (f.number === VALUE_INFO.type && f.wireType === WIRE_LEN) readType(r.message(), value);
    else r.skip(f.wireType);
  }
  return value;
}

function readType(r: WireReader, value: DeclaredValue): void {
  while (!r.done) {
    const f = r.tag();
    if (f.wireType !== WIRE_LEN) {
      r.skip(f.wireType);
      continue;
    }
    switch (f.number) {
      case TYPE.tensor:
        value.kind = 'tensor';
        readTensorType(r.message(), value);
        break;
      case TYPE.sequence:
        value.kind = 'sequence';
        r.skip(f.wireType);
        break;
      case TYPE.map:
        value.kind = 'map';
        r.skip(f.wireType);
        break;
      case TYPE.optional:
        value.kind = 'optional';
        r.skip(f.wireType);
        break;
      case TYPE.sparseTensor:
        value.kind = 'sparse_tensor';
        r.skip(f.wireType);
        break;
      default:
        r.skip(f.wireType);
    }
  }
}

function readTensorType(r: WireReader, value: DeclaredValue): void {
  while (!r.done) {
    const f = r.tag();
    if (f.number === TENSOR_TYPE.elemType && f.wireType === WIRE_VARINT) value.elemType = r.varint();
    else if (f.number === TENSOR_TYPE.shape && f.wireType === WIRE_LEN) {
      const shape: number[] = [];
      const s = r.message();
      while (!s.done) {
        const sf = s.tag();
        if (sf.number !== SHAPE.dim || sf.wireType !== WIRE_LEN) {
          s.skip(sf.wireType);
          continue;
        }
        let size = -1;
        const d = s.message();
        while (!d.done) {
          const df = d.tag();
          if (df.number === DIM.value && df.wireType === WIRE_VARINT) {
            const v = Number(d.int64());
            size = Number.isSafeInteger(v) && v >= 0 ? v : -1;
          } else d.skip(df.wireType);
        }
        shape.push(size);
      }
      value.shape = shape;
    } else r.skip(f.wireType);
  }
}
