// The WGSL builder: the one writer of WGSL syntax shared by every kernel generator. It collects
// `enable` directives, storage/uniform bindings (from typed specs, so layouts flow forward),
// constants, helper functions and one compute entry point, and prints them deterministically.

export type Enable = "f16" | "subgroups" | "chromium_experimental_subgroup_matrix";

/** A binding's WGSL element type: `f32`, `u32` (packed FP8/bf16 words), `i32`, `atomic<u32>`. */
export type ElemType = "f32" | "vec4<f32>" | "u32" | "i32" | "f16" | "atomic<u32>";

export interface BindingSpec {
  name: string;
  elem: ElemType;
  access: "read" | "read_write";
}

export class WgslBuilder {
  private readonly enables = new Set<Enable>();
  private readonly consts: string[] = [];
  private readonly helpers = new Map<string, string>();
  private readonly shared: string[] = [];
  readonly bindings: BindingSpec[] = [];

  constructor(
    /** Kernel name, also the comment heading the source. */
    readonly name: string,
    /** One-line provenance, e.g. the `.fog` line the kernel came from. */
    readonly origin = "",
  ) {}

  enable(e: Enable): this {
    this.enables.add(e);
    return this;
  }

  /** Declares a storage binding at the next index of @group(0); returns its name. */
  bind(name: string, elem: ElemType, access: "read" | "read_write" = "read"): string {
    if (this.bindings.some((b) => b.name === name)) throw new Error(`WgslBuilder: binding '${name}' declared twice`);
    this.bindings.push({ name, elem, access });
    return name;
  }

  constant(name: string, type: "u32" | "i32" | "f32" | "bool", value: number | boolean): this {
    const v =
      type === "f32"
        ? fmtF32(value as number)
        : type === "u32"
          ? `${value}u`
          : type === "i32"
            ? `${value}i`
            : String(value);
    this.consts.push(`const ${name}: ${type} = ${v};`);
    return this;
  }

  /** Adds a helper function once (keyed by name; the same name with different text is an error). */
  helper(name: string, source: string): this {
    const prev = this.helpers.get(name);
    if (prev !== undefined && prev !== source) throw new Error(`WgslBuilder: helper '${name}' defined twice differently`);
    this.helpers.set(name, source.trim());
    return this;
  }

  /** A workgroup-shared array. */
  workgroupArray(name: string, elem: string, length: number): this {
    this.shared.push(`var<workgroup> ${name}: array<${elem}, ${length}>;`);
    return this;
  }

  /**
   * Prints the module with one compute entry point `main` whose body is `body` (text or lines).
   * `extraParams` adds builtins such as `@builtin(subgroup_invocation_id) sgid: u32`.
   */
  build(workgroupSize: readonly [number, number?, number?], body: string | string[], extraParams: string[] = []): string {
    const out: string[] = [];
    out.push(`// kernel ${this.name}${this.origin ? ` — ${this.origin}` : ""}`);
    for (const e of [...this.enables].sort()) out.push(`enable ${e};`);
    if (this.enables.size) out.push("");
    this.bindings.forEach((b, i) => {
      const t = `array<${b.elem}>`;
      out.push(`@group(0) @binding(${i}) var<storage, ${b.access}> ${b.name}: ${t};`);
    });
    if (this.bindings.length) out.push("");
    out.push(...this.consts);
    out.push(...this.shared);
    if (this.consts.length || this.shared.length) out.push("");
    for (const src of this.helpers.values()) out.push(src, "");
    const ws = workgroupSize.filter((x) => x !== undefined).join(", ");
    out.push(`@compute @workgroup_size(${ws})`);
    out.push(
      "fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,",
      "        @builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lidx: u32,",
      `        @builtin(num_workgroups) nwg: vec3<u32>${extraParams.map((p) => `, ${p}`).join("")}) {`,
    );
    const lines = Array.isArray(body) ? body : body.split("\n");
    for (const l of lines) out.push(l.length ? `  ${l}` : "");
    out.push("}");
    return out.join("\n") + "\n";
  }
}

/** An f32 literal that round-trips exactly (WGSL needs a decimal point or exponent). */
export function fmtF32(x: number): string {
  if (Number.isNaN(x)) throw new Error("fmtF32: NaN has no WGSL literal");
  if (!Number.isFinite(x)) return x > 0 ? "bitcast<f32>(0x7f800000u)" : "bitcast<f32>(0xff800000u)";
  const f = Math.fround(x);
  let s = String(f);
  if (!/[.eE]/.test(s)) s += ".0";
  return `f32(${s})`;
}
