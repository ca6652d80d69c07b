// Figures computed from the graph IR: parameter count, FLOPs per token (forward and training)
// and a memory estimate for one training step, as `fogc compile` prints them.
import { type Graph, numel, paramNodes } from "./ir.js";

export interface ModelStats {
  params: number;
  /** Parameters outside the embedding and LM head (what scaling laws call N). */
  nonEmbeddingParams: number;
  forwardFlopsPerToken: number;
  /** Forward + backward: 3× the forward GEMM and attention FLOPs. */
  trainFlopsPerToken: number;
  memory: { paramsBytes: number; optimizerBytes: number; activationBytes: number };
}

const BYTES: Record<string, number> = { f32: 4, bf16: 2, e4m3: 1, e5m2: 1, i32: 4 };

export function modelStats(g: Graph): ModelStats {
  const params = paramNodes(g);
  const total = params.reduce((s, p) => s + numel(p.shape), 0);
  const embedding = params.filter((p) => p.name === "embed.weight" || p.name === "head.weight").reduce((s, p) => s + numel(p.shape), 0);
  const tokens = g.batch * g.seqLen;
  let flops = 0;
  for (const n of g.nodes) {
    if (n.role !== "fwd") continue;
    if (n.op === "matmul") {
      const [a, b] = n.inputs.map((i) => g.nodes[i].shape);
      const k = n.attrs.transA ? a[0] : a[1];
      flops += 2 * numel(n.shape) * k;
      void b;
    } else if (n.op === "attention") {
      const { heads, headDim, seqLen, causal } = n.attrs;
      // QKᵀ and PV: 2·2·H·Dh multiply-adds per (query, key) pair; causal keeps (T+1)/2 keys on average.
      const keys = causal ? (seqLen + 1) / 2 : seqLen;
      flops += tokens * 4 * heads * headDim * keys;
    }
  }
  // Activations kept for the backward pass: every forward result but parameters and inputs.
  let activationBytes = 0;
  for (const n of g.nodes) if (n.role === "fwd" && n.op !== "param" && n.op !== "input") activationBytes += numel(n.shape) * BYTES[n.dtype];
  return {
    params: total,
    nonEmbeddingParams: total - embedding,
    forwardFlopsPerToken: flops / tokens,
    trainFlopsPerToken: (3 * flops) / tokens,
    // f32 master weights + f32 gradients; AdamW keeps two f32 moments.
    memory: { paramsBytes: total * 8, optimizerBytes: total * 8, activationBytes },
  };
}
