// A small builder for graph IR: appends nodes in topological order, infers shapes and dtypes,
// and names nodes hierarchically. Used by lower-model.ts, autodiff.ts and tests.
import type { Span } from "../grammar/diagnostics.js";
import type { DType, Graph, Node, NodeOf, OpAttrs, OpKind, Role, ScaleSlot, Tap } from "./ir.js";
import { inferDtype, inferShape } from "./shapes.js";

export class GraphBuilder {
  readonly nodes: Node[] = [];
  readonly outputs: Record<string, number> = {};
  readonly scaleSlots: ScaleSlot[] = [];
  readonly taps: Tap[] = [];
  role: Role = "fwd";
  /** Span attached to nodes added while it is set (the `.fog` line being lowered). */
  span: Span | undefined;

  constructor(
    readonly batch: number,
    readonly seqLen: number,
  ) {}

  add<K extends OpKind>(op: K, inputs: number[], attrs: OpAttrs[K], name: string, shape?: number[], dtype?: DType): number {
    const inShapes = inputs.map((i) => this.nodes[i].shape);
    const inTypes = inputs.map((i) => this.nodes[i].dtype);
    const slotFormat = op === "quantize" ? this.scaleSlots[(attrs as OpAttrs["quantize"]).slot].format : undefined;
    const node = {
      id: this.nodes.length,
      op,
      inputs,
      shape: shape ?? inferShape({ op, attrs } as Pick<Node, "op" | "attrs">, inShapes, inTypes),
      dtype: dtype ?? inferDtype(op, attrs as OpAttrs[OpKind], slotFormat),
      attrs,
      name,
      role: this.role,
      ...(this.span ? { span: this.span } : {}),
    } as NodeOf<K>;
    this.nodes.push(node as unknown as Node);
    return node.id;
  }

  shape(id: number): number[] {
    return this.nodes[id].shape;
  }

  build(): Graph {
    return {
      nodes: this.nodes,
      outputs: this.outputs,
      scaleSlots: this.scaleSlots,
      taps: this.taps,
      batch: this.batch,
      seqLen: this.seqLen,
    };
  }

  /** Continue building on an existing graph (autodiff, precision and probe passes). */
  static from(g: Graph): GraphBuilder {
    const b = new GraphBuilder(g.batch, g.seqLen);
    b.nodes.push(...g.nodes);
    Object.assign(b.outputs, g.outputs);
    b.scaleSlots.push(...g.scaleSlots);
    b.taps.push(...g.taps);
    return b;
  }
}
