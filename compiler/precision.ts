// The precision pass: applies the model's recipe to every GEMM of the training graph. FP8 GEMMs
// get `quantize` nodes on their operands (E4M3 forward, E5M2 gradients by default), each with a
// scale slot holding its delayed/current/blockwise state; BF16 GEMMs get their operands rounded
// to bf16. A tensor feeding several GEMMs is quantised once (TE shares one QKV input scale).
import { isFp8, ruleFor } from "./check-precision.js";
import { GraphBuilder } from "./graph-builder.js";
import type { Fp8Format, GemmName, GemmSite, Graph, Node, ScaleSlot } from "./ir.js";
import type { CheckedModel, PrecisionRule } from "./model.js";

type OperandRole = ScaleSlot["role"];

export function applyPrecision(g: Graph, model: CheckedModel): Graph {
  const b = new GraphBuilder(g.batch, g.seqLen);
  const remap = new Map<number, number>();
  const cache = new Map<string, number>();
  const slotOf = new Map<string, number>();
  const id = (old: number): number => remap.get(old)!;

  /** quantize(x) for a slot named after the tensor, created once per (tensor, format, role). */
  const quantized = (oldInput: number, role: OperandRole, format: Fp8Format, rule: PrecisionRule): number => {
    const src = g.nodes[oldInput];
    const slotName = `${src.name}:${role}`;
    const key = `${slotName}:${format}`;
    const hit = cache.get(key);
    if (hit !== undefined) return hit;
    let slot = slotOf.get(key);
    if (slot === undefined) {
      slot = b.scaleSlots.length;
      b.scaleSlots.push({ id: slot, name: slotName, format, scaling: rule.scaling, saturate: rule.saturate, role });
      slotOf.set(key, slot);
    }
    const prevRole = b.role;
    b.role = src.role === "bwd" || role === "gradient" ? "bwd" : src.role;
    b.span = src.span;
    const q = b.add("quantize", [id(oldInput)], { slot }, `${src.name}.fp8`);
    b.role = prevRole;
    cache.set(key, q);
    return q;
  };
  const bf16 = (oldInput: number): number => {
    const key = `bf16:${oldInput}`;
    const hit = cache.get(key);
    if (hit !== undefined) return hit;
    const src = g.nodes[oldInput];
    const prevRole = b.role;
    b.role = src.role;
    b.span = src.span;
    const c = b.add("cast", [id(oldInput)], { to: "bf16" }, `${src.name}.bf16`);
    b.role = prevRole;
    cache.set(key, c);
    return c;
  };

  /** Operand roles of a GEMM by its pass: fprop X·Wᵀ, dgrad dY·W, wgrad dYᵀ·X (papers.md §3.1). */
  const rolesOf = (n: Node & { op: "matmul" }): [OperandRole, OperandRole] => {
    switch (n.attrs.pass ?? "fprop") {
      case "fprop":
        return ["activation", "weight"];
      case "dgrad":
        return ["gradient", "weight"];
      case "wgrad":
        return ["gradient", "activation"];
    }
  };
  const formatOf = (role: OperandRole, rule: PrecisionRule): Fp8Format =>
    role === "activation" ? rule.activations : role === "weight" ? rule.weights : rule.gradients;

  const operands = (n: Node, gemm: GemmName, site: GemmSite, roles: OperandRole[]): number[] => {
    const rule = ruleFor(model.precision, site.layer, site.component, gemm);
    const fp8 = isFp8(rule, gemm);
    return n.inputs.map((inp, i) => {
      const role = roles[i];
      if (role === undefined) return id(inp);
      return fp8 ? quantized(inp, role, formatOf(role, rule), rule) : bf16(inp);
    });
  };

  /** FP8DPA: the slots of P and dS inside one attention (shared by its forward and backward nodes). */
  const attnSlots = (site: GemmSite, name: string): { p: number; ds: number } | undefined => {
    const rule = ruleFor(model.precision, site.layer, site.component, "pv");
    if (!isFp8(rule, "pv")) return undefined;
    const slot = (suffix: string, format: Fp8Format, role: OperandRole): number => {
      const key = `${name}.${suffix}`;
      const hit = slotOf.get(key);
      if (hit !== undefined) return hit;
      const sid = b.scaleSlots.length;
      b.scaleSlots.push({ id: sid, name: key, format, scaling: rule.scaling, saturate: rule.saturate, role });
      slotOf.set(key, sid);
      return sid;
    };
    return { p: slot("P", rule.activations, "activation"), ds: slot("dS", rule.gradients, "gradient") };
  };

  for (const n of g.nodes) {
    let inputs = n.inputs.map(id);
    let attrs = n.attrs;
    if (n.op === "matmul" && n.attrs.gemm && n.attrs.site) {
      inputs = operands(n, n.attrs.gemm, n.attrs.site, rolesOf(n as Node & { op: "matmul" }));
    } else if ((n.op === "attention" || n.op === "attention_grad") && n.attrs.site) {
      // Q, K, V (and dO in the backward) are the attention GEMMs' external operands.
      const roles: OperandRole[] = n.op === "attention" ? ["activation", "activation", "activation"] : ["activation", "activation", "activation", "gradient"];
      inputs = operands(n, "qk", n.attrs.site, roles);
      const fp8 = attnSlots(n.attrs.site, n.name.replace(/\.grad_[qkv]$/, ""));
      if (fp8) attrs = { ...n.attrs, fp8 };
    }
    b.role = n.role;
    b.span = n.span;
    const copy = { ...n, id: b.nodes.length, inputs, attrs } as Node;
    b.nodes.push(copy);
    remap.set(n.id, copy.id);
  }
  for (const [k, v] of Object.entries(g.outputs)) b.outputs[k] = id(v);
  for (const t of g.taps) b.taps.push({ ...t, nodes: t.nodes.map(id) });
  return b.build();
}
