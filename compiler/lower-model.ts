// CheckedModel → forward graph IR for one batch shape: the embedding, each layer's block
// statements expanded into primitive ops (with the probe taps of papers.md §7.2), the LM head
// and the loss. Parameters get their initialisation, weight-decay and learning-rate attributes.
import type { Span } from "../grammar/diagnostics.js";
import { GraphBuilder } from "./graph-builder.js";
import type { GemmName, GemmSite, Graph, Init } from "./ir.js";
import type { AttentionSpec, BlockExpr, CheckedModel, MlpSpec, NormSpec } from "./model.js";

export interface LowerOptions {
  batch: number;
  /** Rows per sequence: the training window, or in a decode graph the new tokens per call. */
  seqLen: number;
  /**
   * A decode graph (sampling with a KV cache, forward-only): `seqLen` new tokens per sequence at the
   * `position` input; per attention a K and a V cache of `context` positions (kv_cache), written by
   * kv_write and attended through `attention.cached`; RoPE at the position offset; no targets, no
   * loss; outputs `logits` and `kv:<cache>` per cache.
   */
  decode?: { context: number };
}

export function lowerModel(model: CheckedModel, { batch, seqLen, decode }: LowerOptions): Graph {
  const b = new GraphBuilder(batch, seqLen);
  const M = batch * seqLen;
  const D = model.width;
  const L = model.layers;
  const outStd = model.initStd / Math.sqrt(2 * L);

  const param = (name: string, shape: number[], init: Init, decay: boolean, span?: Span): number => {
    b.span = span;
    return b.add("param", [], { init, decay, lrScale: 1 }, name, shape);
  };
  const linear = (x: number, name: string, outDim: number, std: number, gemm: GemmName, span: Span, site: GemmSite): number => {
    const w = param(`${name}.weight`, [outDim, b.shape(x)[1]], { kind: "normal", std }, true, span);
    b.span = span;
    return b.add("matmul", [x, w], { transA: false, transB: true, gemm, site }, name);
  };
  const norm = (x: number, spec: NormSpec, name: string, group: number): number => {
    const inputs = [x];
    if (spec.gain?.trainable) inputs.push(param(`${name}.gain`, [group], { kind: "const", value: spec.gain.init }, false, spec.span));
    if (spec.kind === "layernorm" && spec.bias) {
      if (inputs.length === 1) throw new Error("internal: layernorm with bias but frozen gain is not supported");
      inputs.push(param(`${name}.bias`, [group], { kind: "const", value: 0 }, false, spec.span));
    }
    b.span = spec.span;
    let y = b.add(spec.kind, inputs, { eps: spec.eps, group }, name);
    if (spec.gain && !spec.gain.trainable && spec.gain.init !== 1) y = b.add("scale", [y], { factor: spec.gain.init }, `${name}.frozen_gain`);
    return y;
  };

  b.span = model.span;
  const tokens = b.add("input", [], { input: "tokens" }, "tokens", [M]);
  const targets = decode ? undefined : b.add("input", [], { input: "targets" }, "targets", [M]);
  const position = decode ? b.add("input", [], { input: "position" }, "position", [1]) : undefined;
  const embedW = param("embed.weight", [model.vocab, D], { kind: "normal", std: model.embedding.std }, true, model.span);
  let h = b.add("embed", [embedW, tokens], {}, "embed");
  if (model.embedding.multiplier !== 1) h = b.add("scale", [h], { factor: model.embedding.multiplier }, "embed.multiplier");

  const attention = (x: number, spec: AttentionSpec, name: string, layer: number): number => {
    const { heads: H, kvHeads: Hkv, headDim: Dh } = model;
    const site: GemmSite = { layer, component: spec.name };
    b.taps.push({ probe: "qkv_input", layer, nodes: [x] });
    const q0 = linear(x, `${name}.q`, H * Dh, model.initStd, "qkv", spec.span, site);
    const k0 = linear(x, `${name}.k`, Hkv * Dh, model.initStd, "qkv", spec.span, site);
    const v = linear(x, `${name}.v`, Hkv * Dh, model.initStd, "qkv", spec.span, site);
    b.taps.push({ probe: "qkv", layer, nodes: [q0, k0, v] });
    const reg = (t: number, which: "q" | "k"): number => {
      const qk = spec.qkNorm;
      if (qk.kind === "none") return t;
      if (qk.kind === "norm") return norm(t, qk.norm, `${name}.${which}_norm`, Dh);
      b.span = qk.span;
      let scaled: number;
      if (qk.trainable) {
        const alpha = param(`${name}.alpha_${which}`, [1], { kind: "const", value: qk.alpha }, false, qk.span);
        scaled = b.add("mul", [t, alpha], {}, `${name}.${which}_alpha`);
      } else scaled = qk.alpha === 1 ? t : b.add("scale", [t], { factor: qk.alpha }, `${name}.${which}_alpha`);
      return b.add("tanh", [scaled], {}, `${name}.${which}_tanh`);
    };
    let q = reg(q0, "q");
    let k = reg(k0, "k");
    b.taps.push({ probe: "q", layer, nodes: [q] }, { probe: "k", layer, nodes: [k] });
    b.span = spec.span;
    const pos = position === undefined ? [] : [position];
    if (spec.rope) {
      const ropeAttrs = { headDim: Dh, seqLen, base: spec.rope.base, inverse: false, ...(spec.rope.scaling ? { scaling: spec.rope.scaling } : {}), ...(decode ? { offset: true as const } : {}) };
      q = b.add("rope", [q, ...pos], ropeAttrs, `${name}.q_rope`);
      k = b.add("rope", [k, ...pos], ropeAttrs, `${name}.k_rope`);
    }
    const attrs = { heads: H, kvHeads: Hkv, headDim: Dh, seqLen, scale: spec.softmaxScale, causal: spec.causal, site };
    if (!decode) return linear(b.add("attention", [q, k, v], attrs, `${name}.sdpa`), `${name}.o`, D, outStd, "out", spec.span, site);
    const cached = (which: "k" | "v", rows: number): number => {
      // The cache holds every position of this tensor, so it takes the tensor's name (and with it
      // the training graph's FP8 scale slot, keyed by name); the call's new rows become `.new`.
      const tensorName = b.nodes[rows].name;
      b.nodes[rows].name = `${tensorName}.new`;
      const cache = b.add("kv_cache", [], { which, layer }, `${name}.${which}_cache`, [batch, Hkv, decode.context, Dh]);
      const written = b.add("kv_write", [cache, rows, position!], { rows: seqLen }, tensorName);
      b.outputs[`kv:${b.nodes[cache].name}`] = written;
      return written;
    };
    const o = b.add("attention", [q, cached("k", k), cached("v", v), position!], { ...attrs, cached: { context: decode.context } }, `${name}.sdpa`);
    return linear(o, `${name}.o`, D, outStd, "out", spec.span, site);
  };

  const mlp = (x: number, spec: MlpSpec, name: string, layer: number): number => {
    const F = spec.width;
    const act = spec.activation;
    const gated = act.kind === "swiglu" || act.kind === "geglu" || act.kind === "smooth_swiglu";
    const site: GemmSite = { layer, component: spec.name };
    const h1 = linear(x, `${name}.fc1`, gated ? 2 * F : F, model.initStd, "fc1", spec.span, site);
    b.taps.push({ probe: "mlp_intermediate", layer, nodes: [h1] });
    b.span = spec.span;
    let a: number;
    let rowScale: number | undefined;
    switch (act.kind) {
      case "gelu":
      case "silu":
        a = b.add(act.kind, [h1], {}, `${name}.${act.kind}`);
        break;
      case "swiglu":
      case "geglu":
        a = b.add("glu", [h1], { act: act.kind === "swiglu" ? "silu" : "gelu" }, `${name}.${act.kind}`);
        break;
      case "smooth_swiglu":
        rowScale = b.add("row_absmax", [h1], { cols: F }, `${name}.smooth_scale`);
        a = b.add("div", [b.add("glu", [h1], { act: "silu" }, `${name}.swiglu`), rowScale], {}, `${name}.smooth_div`);
        break;
      case "xielu": {
        const rhoP = param(`${name}.rho_p`, [1], { kind: "softplus_inv", value: act.alphaP }, false, spec.span);
        const rhoN = param(`${name}.rho_n`, [1], { kind: "softplus_inv", value: act.alphaN - act.beta }, false, spec.span);
        b.span = spec.span;
        a = b.add("xielu", [h1, rhoP, rhoN], { beta: act.beta, eps: act.eps }, `${name}.xielu`);
        break;
      }
    }
    b.taps.push({ probe: "mlp_post_act", layer, nodes: [a] });
    let y = linear(a, `${name}.fc2`, D, outStd, "fc2", spec.span, site);
    if (rowScale !== undefined) y = b.add("mul", [y, rowScale], {}, `${name}.smooth_rescale`);
    b.taps.push({ probe: "mlp_out", layer, nodes: [y] });
    return y;
  };

  for (let layer = 0; layer < L; layer++) {
    const env = new Map<string, number>([["h", h]]);
    const uses = new Map<string, number>();
    const unique = (base: string): string => {
      const n = uses.get(base) ?? 0;
      uses.set(base, n + 1);
      return n === 0 ? base : `${base}${n}`;
    };
    const lower = (e: BlockExpr): number => {
      switch (e.kind) {
        case "var":
          return env.get(e.name)!;
        case "add": {
          const l = lower(e.left);
          const r = lower(e.right);
          b.span = e.span;
          return b.add("add", [l, r], {}, unique(`b${layer}.residual`));
        }
        case "scale": {
          const x = lower(e.input);
          b.span = e.span;
          return b.add("scale", [x], { factor: e.factor }, unique(`b${layer}.scale`));
        }
        case "norm":
          return norm(lower(e.input), e.norm, unique(`b${layer}.norm`), D);
        case "layerscale": {
          const x = lower(e.input);
          const g = param(`${unique(`b${layer}.layerscale`)}.gamma`, [D], { kind: "const", value: e.init }, false, e.span);
          b.span = e.span;
          return b.add("mul", [x, g], {}, `b${layer}.layerscale.mul`);
        }
        case "call": {
          const x = lower(e.input);
          const name = unique(`b${layer}.${e.component.name}`);
          return e.component.kind === "attention" ? attention(x, e.component, name, layer) : mlp(x, e.component, name, layer);
        }
      }
    };
    for (const st of model.block) {
      const t = lower(st.expr);
      env.set(st.target, t);
      if (st.probe) b.taps.push({ probe: st.target, layer, nodes: [t] });
    }
    h = env.get("h")!;
    b.taps.push({ probe: "activation", layer, nodes: [h] });
  }

  if (model.head.norm) h = norm(h, model.head.norm, "final_norm", D);
  b.span = model.span;
  const headW = model.head.tied ? embedW : param("head.weight", [model.vocab, D], { kind: "normal", std: model.head.std }, true, model.span);
  b.span = model.span;
  const logits = b.add("matmul", [h, headW], { transA: false, transB: true, gemm: "head", site: { component: "head" } }, "head");
  b.outputs.logits = logits;
  if (targets !== undefined) b.outputs.loss = b.add("cross_entropy", [logits, targets], {}, "loss");
  return b.build();
}
